import { Alert, Button, Group, Loader, Modal, Radio, Stack, Table, Text } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { must, problemMessage } from '../api/client';
import { date, money, per } from '../ui/format';
import { usePortal, useRefresh } from './portal-api';
import type { PortalSubscription } from './types';

/** Change plan: pick a plan, see the proration the change bills (the server's own preview), confirm. */
export function ChangePlanModal({
  subscription: s,
  onClose,
}: {
  subscription: PortalSubscription;
  onClose: () => void;
}) {
  const { id, client, locale } = usePortal();
  const refresh = useRefresh();
  const [plan, setPlan] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const plans = useQuery({
    queryKey: ['portal', id, 'plans', s.id],
    queryFn: () =>
      must(
        client.GET('/v1/portal-sessions/{id}/plans', {
          params: { path: { id }, query: { subscription: s.id } },
        }),
      ),
  });
  const preview = useQuery({
    queryKey: ['portal', id, 'preview', s.id, plan],
    enabled: plan !== null,
    retry: false,
    queryFn: () =>
      must(
        client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/change/preview', {
          params: { path: { id, sub: s.id } },
          body: { plan: plan! },
        }),
      ),
  });

  async function confirm() {
    if (!plan) return;
    setBusy(true);
    setError(null);
    try {
      await must(
        client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/change', {
          params: { path: { id, sub: s.id } },
          body: { plan },
        }),
      );
      await refresh();
      onClose();
    } catch (e) {
      setError(problemMessage(e));
      setBusy(false);
    }
  }

  const p = preview.data;
  return (
    <Modal
      opened
      onClose={onClose}
      title="Change plan"
      size="lg"
      closeButtonProps={{ 'aria-label': 'Close' }}
    >
      <Stack gap="md">
        {plans.isPending ? <Loader size="sm" aria-label="Loading plans" /> : null}
        {plans.isError ? <Alert color="red">{problemMessage(plans.error)}</Alert> : null}
        {plans.data ? (
          <Radio.Group label="New plan" value={plan} onChange={setPlan}>
            <Stack gap="xs" mt="xs">
              {plans.data.data.map((o) => (
                <Radio
                  key={o.code}
                  value={o.code}
                  label={`${o.name} — ${money(o.price.amount, o.price.currency, locale)} / ${per(o.billingPeriod)}`}
                />
              ))}
            </Stack>
          </Radio.Group>
        ) : null}
        {preview.isFetching ? <Loader size="sm" aria-label="Loading the price preview" /> : null}
        {preview.isError ? <Alert color="red">{problemMessage(preview.error)}</Alert> : null}
        {p ? (
          <Stack gap="xs" aria-live="polite" data-testid="change-preview">
            <Text fw={600}>Price preview</Text>
            {p.timing === 'immediate' ? (
              <Text>
                Takes effect now. Due today:{' '}
                <strong>
                  {p.invoice
                    ? money(p.invoice.amountDue, p.invoice.currency, locale)
                    : money(0, s.price.currency, locale)}
                </strong>
              </Text>
            ) : (
              <Text>
                Takes effect on {date(p.effectiveAt, locale)}
                {p.invoice ? `, then ${money(p.invoice.total, p.invoice.currency, locale)}` : ''}.
              </Text>
            )}
            {p.invoice && p.invoice.lines.length > 0 ? (
              <Table>
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>Line</Table.Th>
                    <Table.Th ta="right">Amount</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {p.invoice.lines.map((l) => (
                    <Table.Tr key={`${l.kind}-${l.description}-${l.periodStart}-${l.amount}`}>
                      <Table.Td>{l.description}</Table.Td>
                      <Table.Td ta="right">{money(l.amount, p.invoice!.currency, locale)}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            ) : null}
            <Text size="sm">Next renewal on {date(p.nextRenewal, locale)}.</Text>
          </Stack>
        ) : null}
        {error ? (
          <Alert color="red" variant="light" role="alert">
            {error}
          </Alert>
        ) : null}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Keep current plan
          </Button>
          <Button onClick={confirm} disabled={!p} loading={busy}>
            Confirm change
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
