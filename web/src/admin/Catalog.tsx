import {
  Anchor,
  Button,
  Checkbox,
  Group,
  NumberInput,
  Select,
  Stack,
  Table,
  Tabs,
  TextInput,
} from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { must } from '../api/client';
import { count, date, money, per, ratePercent } from '../ui/format';
import { AdminModal } from './AdminModal';
import { admin, useInvalidate, usePaged } from './admin-api';
import { DialogActions, newPriceRow, PriceRows, pricesOf, useSave } from './forms';
import { PagedTable } from './Paged';
import { PageTitle } from './Shell';

const TABS = ['plans', 'products', 'markets'] as const;
type Tab = (typeof TABS)[number];

/** Markets and products for pickers and labels: the first 100 of each (the API's largest page). */
export function useCatalogRefs() {
  const markets = useQuery({
    queryKey: ['admin', 'catalog', 'markets', 'refs'],
    queryFn: () => must(admin.GET('/v1/markets', { params: { query: { limit: '100' } } })),
  });
  const products = useQuery({
    queryKey: ['admin', 'catalog', 'products', 'refs'],
    queryFn: () => must(admin.GET('/v1/products', { params: { query: { limit: '100' } } })),
  });
  return { markets: markets.data?.data ?? [], products: products.data?.data ?? [] };
}

/** Catalog: plans, products and markets, each listed page by page with a create form. */
export default function Catalog() {
  const [params, setParams] = useSearchParams();
  const tab: Tab = TABS.includes(params.get('tab') as Tab) ? (params.get('tab') as Tab) : 'plans';
  return (
    <>
      <PageTitle>Catalog</PageTitle>
      <Tabs value={tab} onChange={(v) => setParams(v && v !== 'plans' ? { tab: v } : {})} keepMounted={false}>
        <Tabs.List mb="md">
          <Tabs.Tab value="plans">Plans</Tabs.Tab>
          <Tabs.Tab value="products">Products</Tabs.Tab>
          <Tabs.Tab value="markets">Markets</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="plans">
          <Plans />
        </Tabs.Panel>
        <Tabs.Panel value="products">
          <Products />
        </Tabs.Panel>
        <Tabs.Panel value="markets">
          <Markets />
        </Tabs.Panel>
      </Tabs>
    </>
  );
}

function Plans() {
  const [creating, setCreating] = useState(false);
  const refs = useCatalogRefs();
  const productCode = (id: string) => refs.products.find((p) => p.id === id)?.code ?? id;
  const list = usePaged(['catalog', 'plans'], (query) => must(admin.GET('/v1/plans', { params: { query } })));
  return (
    <Stack>
      <Group>
        <Button onClick={() => setCreating(true)}>New plan</Button>
      </Group>
      <PagedTable
        caption="Plans with the prices in force now"
        columns={['Code', 'Name', 'Product', 'Billing', 'Trial', 'Prices']}
        list={list}
        empty="No plans yet."
        row={(p) => (
          <Table.Tr key={p.id}>
            <Table.Td>
              <Anchor component={Link} to={`/admin/catalog/plans/${encodeURIComponent(p.id)}`}>
                {p.code}
              </Anchor>
            </Table.Td>
            <Table.Td>{p.name}</Table.Td>
            <Table.Td>{productCode(p.product)}</Table.Td>
            <Table.Td>per {per(p.billingPeriod)}</Table.Td>
            <Table.Td>{p.trialDays > 0 ? `${count(p.trialDays)} days` : '—'}</Table.Td>
            <Table.Td>
              {p.prices
                .map((x) => `${money(x.amount, x.currency)}${x.market ? ` (${x.market})` : ''}`)
                .join(', ')}
            </Table.Td>
          </Table.Tr>
        )}
      />
      {creating ? <NewPlan onClose={() => setCreating(false)} /> : null}
    </Stack>
  );
}

function NewPlan({ onClose }: { onClose: () => void }) {
  const refs = useCatalogRefs();
  const invalidate = useInvalidate();
  const navigate = useNavigate();
  const save = useSave();
  const [code, setCode] = useState('');
  const [name, setName] = useState('');
  const [product, setProduct] = useState<string | null>(null);
  const [billingPeriod, setBillingPeriod] = useState<'week' | 'month' | 'year'>('month');
  const [trialDays, setTrialDays] = useState<number | string>(0);
  const [prices, setPrices] = useState([newPriceRow()]);

  function submit(e: FormEvent) {
    e.preventDefault();
    const checked = pricesOf(prices);
    if ('problem' in checked) {
      save.setError(new Error(checked.problem));
      return;
    }
    void save.run(async () => {
      const plan = await must(
        admin.POST('/v1/plans', {
          body: {
            code: code.trim(),
            ...(name.trim() ? { name: name.trim() } : {}),
            product: product ?? '',
            billingPeriod,
            trialDays: Number(trialDays) || 0,
            prices: checked.prices,
          },
        }),
      );
      await invalidate('catalog');
      // The new plan opens: in a long list it would be on a later page.
      navigate(`/admin/catalog/plans/${encodeURIComponent(plan.id)}`);
    });
  }

  return (
    <AdminModal onClose={onClose} title="New plan" size="lg">
      <form onSubmit={submit} noValidate>
        <Stack>
          <TextInput label="Code" required value={code} onChange={(e) => setCode(e.currentTarget.value)} />
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <Select
            label="Product"
            required
            searchable
            data={refs.products.map((p) => ({ value: p.id, label: `${p.name} (${p.code})` }))}
            value={product}
            onChange={setProduct}
          />
          <Group grow>
            <Select
              label="Billing period"
              data={[
                { value: 'week', label: 'Weekly' },
                { value: 'month', label: 'Monthly' },
                { value: 'year', label: 'Yearly' },
              ]}
              value={billingPeriod}
              allowDeselect={false}
              onChange={(v) => setBillingPeriod((v as 'week' | 'month' | 'year') ?? 'month')}
            />
            <NumberInput label="Trial days" min={0} max={365} value={trialDays} onChange={setTrialDays} />
          </Group>
          <PriceRows rows={prices} onChange={setPrices} markets={refs.markets} />
          <DialogActions save={save} onCancel={onClose} submit="Create plan" />
        </Stack>
      </form>
    </AdminModal>
  );
}

function Products() {
  const [creating, setCreating] = useState(false);
  const list = usePaged(['catalog', 'products'], (query) =>
    must(admin.GET('/v1/products', { params: { query } })),
  );
  return (
    <Stack>
      <Group>
        <Button onClick={() => setCreating(true)}>New product</Button>
      </Group>
      <PagedTable
        caption="Products"
        columns={['Code', 'Name', 'Features', 'Seats', 'Created']}
        list={list}
        empty="No products yet."
        row={(p) => (
          <Table.Tr key={p.id}>
            <Table.Td>{p.code}</Table.Td>
            <Table.Td>{p.name}</Table.Td>
            <Table.Td>{p.features.join(', ')}</Table.Td>
            <Table.Td>{count(p.seats)}</Table.Td>
            <Table.Td>{date(p.createdAt)}</Table.Td>
          </Table.Tr>
        )}
      />
      {creating ? <NewProduct onClose={() => setCreating(false)} /> : null}
    </Stack>
  );
}

function NewProduct({ onClose }: { onClose: () => void }) {
  const invalidate = useInvalidate();
  const save = useSave();
  const [code, setCode] = useState('');
  const [name, setName] = useState('');
  const [features, setFeatures] = useState('');
  const [seats, setSeats] = useState<number | string>(1);
  function submit(e: FormEvent) {
    e.preventDefault();
    void save.run(async () => {
      await must(
        admin.POST('/v1/products', {
          body: {
            code: code.trim(),
            ...(name.trim() ? { name: name.trim() } : {}),
            features: features
              .split(',')
              .map((f) => f.trim())
              .filter((f) => f !== ''),
            seats: Number(seats) || 1,
          },
        }),
      );
      await invalidate('catalog');
    }, onClose);
  }
  return (
    <AdminModal onClose={onClose} title="New product">
      <form onSubmit={submit} noValidate>
        <Stack>
          <TextInput label="Code" required value={code} onChange={(e) => setCode(e.currentTarget.value)} />
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <TextInput
            label="Features"
            description="Entitlement features, separated by commas"
            value={features}
            onChange={(e) => setFeatures(e.currentTarget.value)}
          />
          <NumberInput label="Seats" min={1} max={100} value={seats} onChange={setSeats} />
          <DialogActions save={save} onCancel={onClose} submit="Create product" />
        </Stack>
      </form>
    </AdminModal>
  );
}

function Markets() {
  const [creating, setCreating] = useState(false);
  const list = usePaged(['catalog', 'markets'], (query) =>
    must(admin.GET('/v1/markets', { params: { query } })),
  );
  return (
    <Stack>
      <Group>
        <Button onClick={() => setCreating(true)}>New market</Button>
      </Group>
      <PagedTable
        caption="Markets"
        columns={['Code', 'Name', 'Currency', 'Tax', 'Locale', 'Seller']}
        list={list}
        empty="No markets yet."
        row={(m) => (
          <Table.Tr key={m.id}>
            <Table.Td>{m.code}</Table.Td>
            <Table.Td>{m.name ?? '—'}</Table.Td>
            <Table.Td>{m.currency}</Table.Td>
            <Table.Td>
              {ratePercent(m.taxRateBps)} % {m.taxInclusive ? 'included' : 'added'}
            </Table.Td>
            <Table.Td>{m.locale}</Table.Td>
            <Table.Td>{m.seller?.legalName ?? '—'}</Table.Td>
          </Table.Tr>
        )}
      />
      {creating ? <NewMarket onClose={() => setCreating(false)} /> : null}
    </Stack>
  );
}

function NewMarket({ onClose }: { onClose: () => void }) {
  const invalidate = useInvalidate();
  const save = useSave();
  const [code, setCode] = useState('');
  const [name, setName] = useState('');
  const [currency, setCurrency] = useState('');
  const [taxRate, setTaxRate] = useState<number | string>(0);
  const [taxInclusive, setTaxInclusive] = useState(true);
  const [locale, setLocale] = useState('');
  function submit(e: FormEvent) {
    e.preventDefault();
    void save.run(async () => {
      await must(
        admin.POST('/v1/markets', {
          body: {
            code: code.trim().toUpperCase(),
            ...(name.trim() ? { name: name.trim() } : {}),
            currency: currency.trim().toUpperCase(),
            taxRateBps: Math.round(Number(taxRate) * 100),
            taxInclusive,
            ...(locale.trim() ? { locale: locale.trim() } : {}),
          },
        }),
      );
      await invalidate('catalog');
    }, onClose);
  }
  return (
    <AdminModal onClose={onClose} title="New market">
      <form onSubmit={submit} noValidate>
        <Stack>
          <Group grow>
            <TextInput
              label="Code"
              description="ISO country code"
              required
              maxLength={2}
              value={code}
              onChange={(e) => setCode(e.currentTarget.value)}
            />
            <TextInput
              label="Currency"
              description="ISO 4217"
              required
              maxLength={3}
              value={currency}
              onChange={(e) => setCurrency(e.currentTarget.value)}
            />
          </Group>
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <NumberInput
            label="Tax rate (%)"
            min={0}
            max={100}
            decimalScale={2}
            value={taxRate}
            onChange={setTaxRate}
          />
          <Checkbox
            label="Prices include tax"
            checked={taxInclusive}
            onChange={(e) => setTaxInclusive(e.currentTarget.checked)}
          />
          <TextInput
            label="Locale"
            description="BCP 47, e.g. sv-SE (default: from the code)"
            value={locale}
            onChange={(e) => setLocale(e.currentTarget.value)}
          />
          <DialogActions save={save} onCancel={onClose} submit="Create market" />
        </Stack>
      </form>
    </AdminModal>
  );
}
