import { Alert, Anchor, Badge, Button, Group, Paper, Stack, Table, Text } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { must } from '../api/client';
import { count, dateTime } from '../ui/format';
import { Loading } from '../ui/states';
import { admin, useInvalidate, usePaged } from './admin-api';
import { FormError, useSave } from './forms';
import { PagedTable } from './Paged';
import { PageError, PageTitle } from './Shell';

/** One endpoint: enable or disable it, and its deliveries (newest first), each one redeliverable. */
export default function WebhookDetail() {
  const { id = '' } = useParams();
  const invalidate = useInvalidate();
  const save = useSave();
  const [notice, setNotice] = useState<string | null>(null);
  const endpoint = useQuery({
    queryKey: ['admin', 'webhooks', id],
    queryFn: () => must(admin.GET('/v1/webhook-endpoints/{id}', { params: { path: { id } } })),
  });
  const deliveries = usePaged(['webhooks', id, 'deliveries'], (query) =>
    must(admin.GET('/v1/webhook-endpoints/{id}/deliveries', { params: { path: { id }, query } })),
  );
  if (endpoint.isPending) return <Loading />;
  if (endpoint.isError) return <PageError title="Webhook endpoint" error={endpoint.error} />;
  const w = endpoint.data;

  const toggle = () =>
    save.run(async () => {
      if (w.status === 'enabled') {
        await must(admin.POST('/v1/webhook-endpoints/{id}/disable', { params: { path: { id } } }));
      } else {
        await must(admin.POST('/v1/webhook-endpoints/{id}/enable', { params: { path: { id } } }));
      }
      await invalidate('webhooks');
    });
  const redeliver = (event: string) =>
    save.run(async () => {
      await must(
        admin.POST('/v1/events/{id}/redeliver', { params: { path: { id: event } }, body: { endpoint: id } }),
      );
      setNotice(`Event ${event} queued for redelivery.`);
      await invalidate('webhooks', id, 'deliveries');
    });

  return (
    <Stack>
      <Anchor component={Link} to="/admin/webhooks" size="sm">
        ← Webhooks
      </Anchor>
      <PageTitle>Webhook endpoint</PageTitle>
      <Paper withBorder p="md">
        <Stack gap="xs">
          <Text fw={600} style={{ overflowWrap: 'anywhere' }}>
            {w.url}
          </Text>
          <Text size="sm">Events: {w.eventTypes.join(', ')}</Text>
          <Group>
            <Badge variant="outline" color={w.status === 'enabled' ? 'teal' : 'red'}>
              {w.status}
            </Badge>
            <Button size="xs" variant="outline" onClick={toggle} loading={save.busy}>
              {w.status === 'enabled' ? 'Disable endpoint' : 'Enable endpoint'}
            </Button>
          </Group>
        </Stack>
      </Paper>
      <FormError error={save.error} />
      {notice ? (
        <Alert color="teal" variant="light" role="status">
          {notice}
        </Alert>
      ) : null}
      <PagedTable
        caption="Deliveries, newest first"
        columns={['Event', 'Status', 'Attempts', 'Response', 'Last attempt', 'Next attempt', 'Actions']}
        list={deliveries}
        empty="No deliveries yet."
        minWidth={760}
        row={(d) => (
          <Table.Tr key={d.id}>
            <Table.Td>
              {d.eventType}
              <Text size="xs" c="dimmed">
                {d.event}
              </Text>
            </Table.Td>
            <Table.Td>
              <Badge
                variant="outline"
                color={d.status === 'succeeded' ? 'teal' : d.status === 'failed' ? 'red' : 'gray'}
              >
                {d.status}
              </Badge>
            </Table.Td>
            <Table.Td>{count(d.attempts)}</Table.Td>
            <Table.Td>{d.responseCode ?? (d.lastError ? d.lastError.slice(0, 60) : '—')}</Table.Td>
            <Table.Td>{dateTime(d.lastAttemptAt)}</Table.Td>
            <Table.Td>{dateTime(d.nextAttemptAt)}</Table.Td>
            <Table.Td>
              <Button
                size="compact-sm"
                variant="outline"
                aria-label={`Redeliver event ${d.event}`}
                onClick={() => redeliver(d.event)}
              >
                Redeliver
              </Button>
            </Table.Td>
          </Table.Tr>
        )}
      />
    </Stack>
  );
}
