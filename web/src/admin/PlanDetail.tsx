import {
  Alert,
  Anchor,
  Button,
  Group,
  Paper,
  SimpleGrid,
  Stack,
  Table,
  TextInput,
  Title,
} from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useParams } from 'react-router';
import { must } from '../api/client';
import { count, dateTime, money, per } from '../ui/format';
import { Loading } from '../ui/states';
import { admin, useInvalidate, usePaged } from './admin-api';
import { useCatalogRefs } from './Catalog';
import { Field } from './Field';
import { FormError, fromUtcInput, newPriceRow, PriceRows, pricesOf, useSave } from './forms';
import { PagedTable } from './Paged';
import { PageError, PageTitle } from './Shell';

/** One plan: its terms, its price versions (oldest first) and a form to schedule new prices. */
export default function PlanDetail() {
  const { id = '' } = useParams();
  const refs = useCatalogRefs();
  const plan = useQuery({
    queryKey: ['admin', 'catalog', 'plan', id],
    queryFn: () => must(admin.GET('/v1/plans/{id}', { params: { path: { id } } })),
  });
  const versions = usePaged(['catalog', 'plan', id, 'versions'], (query) =>
    must(admin.GET('/v1/plans/{id}/price-versions', { params: { path: { id }, query } })),
  );
  if (plan.isPending) return <Loading />;
  if (plan.isError) return <PageError title="Plan" error={plan.error} />;
  const p = plan.data;
  const product = refs.products.find((x) => x.id === p.product);
  return (
    <Stack>
      <Anchor component={Link} to="/admin/catalog" size="sm">
        ← Catalog
      </Anchor>
      <PageTitle>{`Plan ${p.code}`}</PageTitle>
      <Paper withBorder p="md">
        <SimpleGrid cols={{ base: 1, sm: 3 }}>
          <Field label="Name" value={p.name} />
          <Field label="Product" value={product ? `${product.name} (${product.code})` : p.product} />
          <Field label="Billing" value={`per ${per(p.billingPeriod)}`} />
          <Field label="Trial" value={p.trialDays > 0 ? `${count(p.trialDays)} days` : 'None'} />
          <Field label="Change timing" value={p.changeTiming ?? 'catalog default'} />
          <Field label="Cancel timing" value={p.cancelTiming ?? 'catalog default'} />
        </SimpleGrid>
      </Paper>
      <Title order={2} size="h3">
        Price versions
      </Title>
      <PagedTable
        caption="Price versions, oldest first"
        columns={['Version', 'Effective', 'Existing subscribers from', 'Prices']}
        list={versions}
        empty="No price versions."
        row={(v) => (
          <Table.Tr key={v.id}>
            <Table.Td>{count(v.version)}</Table.Td>
            <Table.Td>{v.effectiveAt ? dateTime(v.effectiveAt) : 'from the start'}</Table.Td>
            <Table.Td>{v.existingSubscribersFrom ? dateTime(v.existingSubscribersFrom) : '—'}</Table.Td>
            <Table.Td>
              {v.prices
                .map((x) => `${money(x.amount, x.currency)}${x.market ? ` (${x.market})` : ''}`)
                .join(', ')}
            </Table.Td>
          </Table.Tr>
        )}
      />
      <SchedulePrices planId={p.id} markets={refs.markets} />
    </Stack>
  );
}

function SchedulePrices({
  planId,
  markets,
}: {
  planId: string;
  markets: Array<{ code: string; currency: string }>;
}) {
  const invalidate = useInvalidate();
  const save = useSave();
  const [effectiveAt, setEffectiveAt] = useState('');
  const [existingFrom, setExistingFrom] = useState('');
  const [prices, setPrices] = useState([newPriceRow()]);
  const [done, setDone] = useState(false);

  function submit(e: FormEvent) {
    e.preventDefault();
    setDone(false);
    const checked = pricesOf(prices);
    if ('problem' in checked) {
      save.setError(new Error(checked.problem));
      return;
    }
    if (!effectiveAt) {
      save.setError(new Error('Choose when the new prices take effect'));
      return;
    }
    void save.run(
      async () => {
        await must(
          admin.POST('/v1/plans/{id}/price-versions', {
            params: { path: { id: planId } },
            body: {
              prices: checked.prices,
              effectiveAt: fromUtcInput(effectiveAt),
              ...(existingFrom ? { existingSubscribersFrom: fromUtcInput(existingFrom) } : {}),
            },
          }),
        );
        await invalidate('catalog');
      },
      () => {
        setDone(true);
        setPrices([newPriceRow()]);
      },
    );
  }

  return (
    <Paper withBorder p="md" component="form" onSubmit={submit} noValidate aria-labelledby="schedule-heading">
      <Stack>
        <Title order={2} size="h4" id="schedule-heading">
          Schedule new prices
        </Title>
        <Group grow align="flex-start" wrap="wrap">
          <TextInput
            type="datetime-local"
            label="Effective at (UTC)"
            required
            value={effectiveAt}
            onChange={(e) => setEffectiveAt(e.currentTarget.value)}
          />
          <TextInput
            type="datetime-local"
            label="Existing subscribers from (UTC)"
            description="Grandfathering: optional, later than the above"
            value={existingFrom}
            onChange={(e) => setExistingFrom(e.currentTarget.value)}
          />
        </Group>
        <PriceRows rows={prices} onChange={setPrices} markets={markets} />
        <FormError error={save.error} />
        {done ? (
          <Alert color="teal" variant="light" role="status">
            New prices scheduled.
          </Alert>
        ) : null}
        <Group>
          <Button type="submit" loading={save.busy}>
            Schedule prices
          </Button>
        </Group>
      </Stack>
    </Paper>
  );
}
