import { Anchor, Badge, Button, Paper, SimpleGrid, Stack, Table, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { must } from '../api/client';
import { date, dateTime, money } from '../ui/format';
import { Loading } from '../ui/states';
import { type Answer, admin, usePaged } from './admin-api';
import { CustomerTimeline } from './CustomerTimeline';
import { Field } from './Field';
import { PagedTable } from './Paged';
import { RefundModal } from './RefundModal';
import { PageError, PageTitle } from './Shell';

type Payment = Answer<'/v1/payments/{id}', 'get'>;

/** A customer: details, subscriptions, payments (with refunds) and one timeline of everything. */
export default function CustomerDetail() {
  const { id = '' } = useParams();
  const customer = useQuery({
    queryKey: ['admin', 'customer', id],
    queryFn: () => must(admin.GET('/v1/customers/{id}', { params: { path: { id } } })),
  });
  if (customer.isPending) return <Loading />;
  if (customer.isError) return <PageError title="Customer" error={customer.error} />;
  const c = customer.data;
  return (
    <Stack>
      <Anchor component={Link} to="/admin/customers" size="sm">
        ← Customers
      </Anchor>
      <PageTitle>{`Customer ${c.externalId}`}</PageTitle>
      <Paper withBorder p="md">
        <SimpleGrid cols={{ base: 1, sm: 3 }}>
          <Field label="Id" value={c.id} />
          <Field label="Name" value={c.name ?? '—'} />
          <Field label="Email" value={c.email ?? '—'} />
          <Field label="Market" value={`${c.market} (${c.currency})`} />
          <Field label="Created" value={date(c.createdAt)} />
          <Field
            label="Test clock"
            value={c.testClock ?? 'None'}
            href={c.testClock ? '/admin/test-clocks' : undefined}
          />
        </SimpleGrid>
        {c.erased ? (
          <Badge mt="sm" variant="outline" color="gray">
            Erased {date(c.erasedAt)}
          </Badge>
        ) : null}
      </Paper>
      <Subscriptions customerId={c.id} />
      <Payments customerId={c.id} />
      <CustomerTimeline customerId={c.id} />
    </Stack>
  );
}

function Subscriptions({ customerId }: { customerId: string }) {
  const list = usePaged(['customer', customerId, 'subscriptions'], (query) =>
    must(admin.GET('/v1/subscriptions', { params: { query: { ...query, customer: customerId } } })),
  );
  return (
    <Paper withBorder p="md" component="section" aria-labelledby="subscriptions-heading">
      <Title order={2} size="h3" id="subscriptions-heading" mb="sm">
        Subscriptions
      </Title>
      <PagedTable
        caption="Subscriptions, oldest first"
        columns={['Subscription', 'Status', 'Price', 'Current period', 'Cancels at']}
        list={list}
        empty="No subscriptions."
        row={(s) => (
          <Table.Tr key={s.id}>
            <Table.Td>{s.id}</Table.Td>
            <Table.Td>
              <Badge variant="outline" color={s.status === 'active' ? 'teal' : 'gray'}>
                {s.status}
              </Badge>
            </Table.Td>
            <Table.Td>
              {money(s.price, s.currency)} / {s.billingPeriod}
            </Table.Td>
            <Table.Td>
              {date(s.currentPeriodStart)} – {date(s.currentPeriodEnd)}
            </Table.Td>
            <Table.Td>{s.cancelAt ? dateTime(s.cancelAt) : '—'}</Table.Td>
          </Table.Tr>
        )}
      />
    </Paper>
  );
}

function Payments({ customerId }: { customerId: string }) {
  const [refunding, setRefunding] = useState<Payment | null>(null);
  const list = usePaged(['customer', customerId, 'payments'], (query) =>
    must(admin.GET('/v1/payments', { params: { query: { ...query, customer: customerId } } })),
  );
  return (
    <Paper withBorder p="md" component="section" aria-labelledby="payments-heading">
      <Title order={2} size="h3" id="payments-heading" mb="sm">
        Payments
      </Title>
      <PagedTable
        caption="Payments, oldest first"
        columns={['Payment', 'Date', 'Description', 'Amount', 'Refunded', 'Status', 'Actions']}
        list={list}
        empty="No payments."
        minWidth={720}
        row={(p) => {
          const refundable =
            (p.status === 'succeeded' || p.status === 'partially_refunded' || p.status === 'dispute_won') &&
            p.amountRefunded < p.amount;
          return (
            <Table.Tr key={p.id}>
              <Table.Td>{p.id}</Table.Td>
              <Table.Td>{dateTime(p.createdAt)}</Table.Td>
              <Table.Td>{p.description}</Table.Td>
              <Table.Td ta="right">{money(p.amount, p.currency)}</Table.Td>
              <Table.Td ta="right">
                {p.amountRefunded > 0 ? money(p.amountRefunded, p.currency) : '—'}
              </Table.Td>
              <Table.Td>
                <Badge
                  variant="outline"
                  color={p.status === 'succeeded' ? 'teal' : p.status === 'failed' ? 'red' : 'gray'}
                >
                  {p.status}
                </Badge>
              </Table.Td>
              <Table.Td>
                {refundable ? (
                  <Button
                    size="compact-sm"
                    variant="outline"
                    aria-label={`Refund payment ${p.id}`}
                    onClick={() => setRefunding(p)}
                  >
                    Refund
                  </Button>
                ) : null}
              </Table.Td>
            </Table.Tr>
          );
        }}
      />
      {refunding ? <RefundModal payment={refunding} onClose={() => setRefunding(null)} /> : null}
    </Paper>
  );
}
