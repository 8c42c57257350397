import { Alert, Badge, Button, Group, Paper, Stack, Text, Title } from '@mantine/core';
import { useState } from 'react';
import { must, problemMessage } from '../api/client';
import { date, money, per } from '../ui/format';
import { CancelModal } from './CancelModal';
import { ChangePlanModal } from './ChangePlanModal';
import { MembersPanel } from './MembersPanel';
import { usePortal, useRefresh } from './portal-api';
import type { PortalSubscription } from './types';

const STATUS: Record<string, { label: string; color: string }> = {
  active: { label: 'Active', color: 'teal' },
  trialing: { label: 'Trial', color: 'blue' },
  past_due: { label: 'Payment due', color: 'orange' },
  paused: { label: 'Paused', color: 'gray' },
  canceled: { label: 'Canceled', color: 'red' },
  incomplete: { label: 'Incomplete', color: 'orange' },
};

export function SubscriptionCard({ subscription: s }: { subscription: PortalSubscription }) {
  const { id, client, locale } = usePortal();
  const refresh = useRefresh();
  const [changing, setChanging] = useState(false);
  const [canceling, setCanceling] = useState(false);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const status = STATUS[s.status] ?? { label: s.status, color: 'gray' };
  const headingId = `sub-${s.id}`;

  async function act(name: string, call: () => Promise<unknown>) {
    setBusy(name);
    setError(null);
    try {
      await call();
      await refresh();
    } catch (e) {
      setError(problemMessage(e));
    } finally {
      setBusy(null);
    }
  }
  const path = { params: { path: { id, sub: s.id } } };

  return (
    <Paper withBorder p="lg" component="section" aria-labelledby={headingId}>
      <Stack gap="sm">
        <Group justify="space-between" wrap="wrap">
          <Title order={2} size="h3" id={headingId}>
            {s.plan.name}
          </Title>
          <Badge color={status.color} variant="outline">
            {status.label}
          </Badge>
        </Group>
        <Text>
          {money(s.price.amount, s.price.currency, locale)} / {per(s.plan.billingPeriod)}
        </Text>
        {s.cancelAt ? (
          <Alert color="orange" variant="light" title="Cancellation scheduled">
            Your access ends on {date(s.cancelAt, locale)}.
          </Alert>
        ) : s.nextRenewal ? (
          <Text size="sm">
            Next renewal on {date(s.nextRenewal.at, locale)}:{' '}
            {money(s.nextRenewal.amount, s.nextRenewal.currency, locale)}
          </Text>
        ) : null}
        {s.pendingChange ? (
          <Text size="sm">
            Changes to {s.pendingChange.planName ?? s.pendingChange.plan} on{' '}
            {date(s.pendingChange.effectiveAt, locale)}.
          </Text>
        ) : null}
        {error ? (
          <Alert color="red" variant="light" role="alert">
            {error}
          </Alert>
        ) : null}
        <Group gap="sm" wrap="wrap">
          {s.status !== 'paused' && !s.cancelAt ? (
            <Button variant="outline" onClick={() => setChanging(true)}>
              Change plan
            </Button>
          ) : null}
          {s.cancelAt ? (
            <Button
              loading={busy === 'reactivate'}
              onClick={() =>
                act('reactivate', () =>
                  must(client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/reactivate', path)),
                )
              }
            >
              Undo cancellation
            </Button>
          ) : (
            <Button variant="outline" color="red" onClick={() => setCanceling(true)}>
              Cancel subscription
            </Button>
          )}
          {s.status === 'paused' ? (
            <Button
              variant="outline"
              loading={busy === 'resume'}
              onClick={() =>
                act('resume', () =>
                  must(client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/resume', path)),
                )
              }
            >
              Resume
            </Button>
          ) : s.status === 'active' && !s.cancelAt ? (
            <Button
              variant="subtle"
              loading={busy === 'pause'}
              onClick={() =>
                act('pause', () =>
                  must(client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/pause', path)),
                )
              }
            >
              Pause
            </Button>
          ) : null}
        </Group>
        {s.product.seats > 1 ? <MembersPanel subscription={s} /> : null}
      </Stack>
      {changing ? <ChangePlanModal subscription={s} onClose={() => setChanging(false)} /> : null}
      {canceling ? <CancelModal subscription={s} onClose={() => setCanceling(false)} /> : null}
    </Paper>
  );
}
