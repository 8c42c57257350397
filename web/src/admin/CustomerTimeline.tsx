import { Alert, Badge, Button, Group, List, Paper, Stack, Table, Text, Timeline, Title } from '@mantine/core';
import { must, problemMessage } from '../api/client';
import { dateTime, money } from '../ui/format';
import { Loading } from '../ui/states';
import { type Answer, admin, usePaged } from './admin-api';

type Item = Answer<'/v1/customers/{id}/timeline', 'get'>['data'][number];

const KIND_LABEL: Record<Item['kind'], string> = {
  subscription: 'Subscription',
  invoice: 'Invoice',
  payment: 'Payment',
  refund: 'Refund',
  ledger_transaction: 'Ledger',
  entitlement: 'Entitlement',
  event: 'Event',
  audit: 'Audit',
};
/** Shade 9 (gray 8) of each colour: outline badge text at 4.9:1 or more on white. */
const KIND_COLOR: Record<Item['kind'], string> = {
  subscription: 'teal.9',
  invoice: 'blue.9',
  payment: 'indigo.9',
  refund: 'pink.9',
  ledger_transaction: 'gray.8',
  entitlement: 'grape.9',
  event: 'cyan.9',
  audit: 'violet.9',
};

/**
 * One timeline of everything that happened to a customer, newest first, page by page: what
 * each module recorded (the API merges it), with an invoice's lines and a transaction's postings.
 */
export function CustomerTimeline({ customerId }: { customerId: string }) {
  const list = usePaged(['customer', customerId, 'timeline'], (query) =>
    must(admin.GET('/v1/customers/{id}/timeline', { params: { path: { id: customerId }, query } })),
  );
  return (
    <Paper withBorder p="md" component="section" aria-labelledby="timeline-heading">
      <Title order={2} size="h3" id="timeline-heading" mb="md">
        Timeline
      </Title>
      {list.isPending ? <Loading /> : null}
      {list.isError ? (
        <Alert color="red" role="alert">
          {problemMessage(list.error)}
        </Alert>
      ) : null}
      {list.rows.length === 0 && !list.isPending && !list.isError ? (
        <Text c="dimmed">Nothing yet.</Text>
      ) : null}
      {list.rows.length > 0 ? (
        <Timeline bulletSize={14} lineWidth={2} data-testid="timeline">
          {list.rows.map((item) => (
            <Timeline.Item
              key={`${item.kind}:${item.id}`}
              title={
                <Group gap="xs" wrap="wrap">
                  <Badge variant="outline" color={KIND_COLOR[item.kind]} size="sm">
                    {KIND_LABEL[item.kind]}
                  </Badge>
                  <Text span fw={600} style={{ overflowWrap: 'anywhere' }}>
                    {item.summary}
                  </Text>
                </Group>
              }
            >
              <Text size="xs" c="dimmed" style={{ overflowWrap: 'anywhere' }}>
                {dateTime(item.at)} UTC · {item.id}
              </Text>
              <Details item={item} />
            </Timeline.Item>
          ))}
        </Timeline>
      ) : null}
      {list.hasMore ? (
        <Group mt="md">
          <Button variant="default" loading={list.loadingMore} onClick={() => list.more()}>
            Load older
          </Button>
        </Group>
      ) : null}
    </Paper>
  );
}

function Details({ item }: { item: Item }) {
  if (item.kind === 'invoice') {
    const inv = item.data;
    return (
      <Stack gap={4} mt={4}>
        <Table withRowBorders={false} verticalSpacing={2}>
          <Table.Caption>Lines of invoice {inv.number ?? inv.id}</Table.Caption>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Line</Table.Th>
              <Table.Th ta="right">Amount</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {inv.lines.map((l, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: lines have no id; their order is theirs.
              <Table.Tr key={i}>
                <Table.Td>{l.description}</Table.Td>
                <Table.Td ta="right">{money(l.amount, inv.currency)}</Table.Td>
              </Table.Tr>
            ))}
            <Table.Tr>
              <Table.Td fw={600}>Total</Table.Td>
              <Table.Td ta="right" fw={600}>
                {money(inv.total, inv.currency)}
              </Table.Td>
            </Table.Tr>
          </Table.Tbody>
        </Table>
      </Stack>
    );
  }
  if (item.kind === 'ledger_transaction') {
    return (
      <List size="xs" mt={4}>
        {item.data.postings.map((p, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: postings are positional.
          <List.Item key={i}>
            {p.account}:{' '}
            {p.debit > 0 ? `debit ${money(p.debit, p.currency)}` : `credit ${money(p.credit, p.currency)}`}
          </List.Item>
        ))}
      </List>
    );
  }
  return null;
}
