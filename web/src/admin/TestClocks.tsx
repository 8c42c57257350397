import {
  Alert,
  Anchor,
  Badge,
  Button,
  Group,
  Paper,
  Select,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { must, problemMessage } from '../api/client';
import { count, dateTime } from '../ui/format';
import { Loading } from '../ui/states';
import { AdminModal } from './AdminModal';
import { admin, useInvalidate, usePaged } from './admin-api';
import { useCatalogRefs } from './Catalog';
import { DialogActions, FormError, fromUtcInput, toUtcInput, useSave } from './forms';
import { PagedTable } from './Paged';
import { PageTitle } from './Shell';

/**
 * Test clocks: create one, attach customers to it (a customer is created on the clock), and
 * advance it: every due renewal, trial end, dunning retry and scheduled change of its customers
 * runs in time order.
 */
export default function TestClocks() {
  const [params, setParams] = useSearchParams();
  const selected = params.get('clock');
  const [creating, setCreating] = useState(false);
  const list = usePaged(['test-clocks'], (query) =>
    must(admin.GET('/v1/test-clocks', { params: { query } })),
  );
  return (
    <Stack>
      <PageTitle actions={<Button onClick={() => setCreating(true)}>New test clock</Button>}>
        Test clocks
      </PageTitle>
      <PagedTable
        caption="Test clocks"
        columns={['Name', 'Frozen time (UTC)', 'Status', 'Actions']}
        list={list}
        empty="No test clocks yet."
        row={(c) => (
          <Table.Tr key={c.id} aria-selected={c.id === selected}>
            <Table.Td>
              {c.name ?? c.id}
              <Text size="xs" c="dimmed">
                {c.id}
              </Text>
            </Table.Td>
            <Table.Td>{dateTime(c.frozenTime)}</Table.Td>
            <Table.Td>
              <Badge variant="outline" color={c.status === 'ready' ? 'teal' : 'violet'}>
                {c.status}
              </Badge>
            </Table.Td>
            <Table.Td>
              <Button
                size="compact-sm"
                variant="outline"
                aria-label={`Open test clock ${c.name ?? c.id}`}
                onClick={() => setParams({ clock: c.id })}
              >
                Open
              </Button>
            </Table.Td>
          </Table.Tr>
        )}
      />
      {selected ? <ClockPanel id={selected} /> : null}
      {creating ? (
        <NewClock onClose={() => setCreating(false)} onCreated={(id) => setParams({ clock: id })} />
      ) : null}
    </Stack>
  );
}

function NewClock({ onClose, onCreated }: { onClose: () => void; onCreated: (id: string) => void }) {
  const invalidate = useInvalidate();
  const save = useSave();
  const [name, setName] = useState('');
  const [frozen, setFrozen] = useState(() => toUtcInput(new Date().toISOString()));
  function submit(e: FormEvent) {
    e.preventDefault();
    // An empty field would parse as 2000-01-01 (":00Z"): a clock far in the past, made silently.
    if (!frozen) {
      save.setError(new Error('Choose the frozen time (UTC).'));
      return;
    }
    void save.run(async () => {
      const clock = await must(
        admin.POST('/v1/test-clocks', {
          body: { frozenTime: fromUtcInput(frozen), ...(name.trim() ? { name: name.trim() } : {}) },
        }),
      );
      await invalidate('test-clocks');
      onCreated(clock.id);
      onClose();
    });
  }
  return (
    <AdminModal onClose={onClose} title="New test clock">
      <form onSubmit={submit} noValidate>
        <Stack>
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <TextInput
            type="datetime-local"
            label="Frozen time (UTC)"
            required
            value={frozen}
            onChange={(e) => setFrozen(e.currentTarget.value)}
          />
          <DialogActions save={save} onCancel={onClose} submit="Create test clock" />
        </Stack>
      </form>
    </AdminModal>
  );
}

function ClockPanel({ id }: { id: string }) {
  const invalidate = useInvalidate();
  const refs = useCatalogRefs();
  const clock = useQuery({
    queryKey: ['admin', 'test-clocks', id],
    queryFn: () => must(admin.GET('/v1/test-clocks/{id}', { params: { path: { id } } })),
  });
  const customers = usePaged(['test-clocks', id, 'customers'], (query) =>
    must(admin.GET('/v1/customers', { params: { query: { ...query, testClock: id } } })),
  );
  const advance = useSave();
  const attach = useSave();
  const [target, setTarget] = useState('');
  const [ran, setRan] = useState<string | null>(null);
  const [externalId, setExternalId] = useState('');
  const [market, setMarket] = useState<string | null>(null);

  if (clock.isPending) return <Loading />;
  if (clock.isError) {
    return (
      <Alert color="red" role="alert">
        {problemMessage(clock.error)}
      </Alert>
    );
  }
  const c = clock.data;
  const nextMonth = () => {
    const d = new Date(c.frozenTime);
    d.setUTCMonth(d.getUTCMonth() + 1);
    return toUtcInput(d.toISOString());
  };

  function submitAdvance(e: FormEvent) {
    e.preventDefault();
    setRan(null);
    const to = target || nextMonth();
    void advance.run(async () => {
      const done = await must(
        admin.POST('/v1/test-clocks/{id}/advance', {
          params: { path: { id } },
          body: { frozenTime: fromUtcInput(to) },
        }),
      );
      setRan(`Advanced to ${dateTime(done.frozenTime)} UTC: ${count(done.jobsRun)} jobs ran.`);
      setTarget('');
      await invalidate('test-clocks');
      await invalidate('customer');
    });
  }

  function submitAttach(e: FormEvent) {
    e.preventDefault();
    void attach.run(
      async () => {
        await must(
          admin.POST('/v1/customers', {
            body: { externalId: externalId.trim(), market: market ?? '', testClock: id },
          }),
        );
        await invalidate('test-clocks', id, 'customers');
      },
      () => setExternalId(''),
    );
  }

  return (
    <Paper withBorder p="md" component="section" aria-labelledby="clock-heading">
      <Stack>
        <Title order={2} size="h3" id="clock-heading">
          {c.name ?? c.id}: {dateTime(c.frozenTime)} UTC
        </Title>
        <form onSubmit={submitAdvance} noValidate>
          <Group align="flex-end" wrap="wrap">
            <TextInput
              type="datetime-local"
              label="Advance to (UTC)"
              description="Empty: one month on"
              value={target}
              min={toUtcInput(c.frozenTime)}
              onChange={(e) => setTarget(e.currentTarget.value)}
            />
            <Button type="submit" loading={advance.busy}>
              Advance clock
            </Button>
          </Group>
        </form>
        <FormError error={advance.error} />
        {ran ? (
          <Alert color="teal" variant="light" role="status">
            {ran}
          </Alert>
        ) : null}

        <Title order={3} size="h4">
          Customers on this clock
        </Title>
        <form onSubmit={submitAttach} noValidate aria-label="Attach a new customer">
          <Group align="flex-end" wrap="wrap">
            <TextInput
              label="External id"
              required
              value={externalId}
              onChange={(e) => setExternalId(e.currentTarget.value)}
            />
            <Select
              label="Market"
              required
              data={refs.markets.map((m) => ({ value: m.code, label: `${m.code} (${m.currency})` }))}
              value={market}
              onChange={setMarket}
            />
            <Button type="submit" variant="outline" loading={attach.busy}>
              Add customer
            </Button>
          </Group>
        </form>
        <FormError error={attach.error} />
        <PagedTable
          caption="Customers on this clock"
          columns={['External id', 'Market', 'Id']}
          list={customers}
          empty="No customer is on this clock."
          minWidth={400}
          row={(x) => (
            <Table.Tr key={x.id}>
              <Table.Td>
                <Anchor component={Link} to={`/admin/customers/${encodeURIComponent(x.id)}`}>
                  {x.externalId}
                </Anchor>
              </Table.Td>
              <Table.Td>{x.market}</Table.Td>
              <Table.Td>{x.id}</Table.Td>
            </Table.Tr>
          )}
        />
      </Stack>
    </Paper>
  );
}
