import { Anchor, Badge, Group, Paper, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts';
import { must } from '../api/client';
import { count, dateTime, minorPerMajor, money } from '../ui/format';
import { Loading } from '../ui/states';
import { type Answer, admin } from './admin-api';
import { ChartFigure } from './Chart';
import { ScrollTable } from './Paged';
import { PageError, PageTitle } from './Shell';

type DashboardReport = Answer<'/v1/reports/dashboard', 'get'>;

/** Series colours: distinct, and dark enough for their legend text on white. */
const COLORS = ['#0b7285', '#c2255c', '#5f3dc4', '#e8590c', '#2b8a3e', '#1864ab', '#862e9c', '#a61e4d'];

/** Tooltip text in the page's text colour (the series colour is its swatch), readable on white. */
const TOOLTIP = { itemStyle: { color: '#212529' }, labelStyle: { color: '#212529' } };

const dayLabel = (day: string) =>
  new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' }).format(
    new Date(`${day}T00:00:00Z`),
  );

/** Active subscriptions as chart rows: one per plan, one key per market. */
function byPlanAndMarket(groups: DashboardReport['activeSubscriptions']) {
  const markets = [...new Set(groups.map((g) => g.market))].sort();
  const rows = new Map<string, Record<string, number | string>>();
  for (const g of groups) {
    const row = rows.get(g.planCode) ?? { plan: g.planCode };
    row[g.market] = ((row[g.market] as number | undefined) ?? 0) + g.count;
    rows.set(g.planCode, row);
  }
  return { markets, rows: [...rows.values()] };
}

export default function Dashboard() {
  const report = useQuery({
    queryKey: ['admin', 'dashboard'],
    queryFn: () => must(admin.GET('/v1/reports/dashboard')),
  });
  if (report.isPending) return <Loading label="Loading the dashboard…" />;
  if (report.isError) return <PageError title="Dashboard" error={report.error} />;
  const d = report.data;
  const active = d.activeSubscriptions.reduce((n, g) => n + g.count, 0);
  const plans = byPlanAndMarket(d.activeSubscriptions);
  const daily = d.new30d.map((n, i) => ({
    day: dayLabel(n.day),
    New: n.count,
    Churned: d.churned30d[i]?.count ?? 0,
    'Failed payments': d.failedPayments30d[i]?.count ?? 0,
    Refunds: d.refunds30d[i]?.count ?? 0,
  }));
  const mrr = d.mrr.map((m) => ({ currency: m.currency, amount: m.amount / minorPerMajor(m.currency) }));
  const sum = (k: 'New' | 'Churned' | 'Failed payments' | 'Refunds') => daily.reduce((n, r) => n + r[k], 0);

  return (
    <Stack gap="lg">
      <PageTitle
        actions={
          <Text size="sm" c="dimmed">
            As of {dateTime(d.asOf)} UTC · test-clock customers left out
          </Text>
        }
      >
        Dashboard
      </PageTitle>

      <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }} spacing="md">
        <Stat label="Active subscriptions" value={count(active)} hint="Trialing, active and past due" />
        <Stat
          label="MRR"
          value={d.mrr.length === 0 ? '—' : d.mrr.map((m) => money(m.amount, m.currency)).join(' · ')}
          hint="Monthly recurring revenue, net of tax"
        />
        <Stat
          label="New / churned (30 days)"
          value={`${count(sum('New'))} / ${count(sum('Churned'))}`}
          hint="Subscriptions started and ended"
        />
        <Stat
          label="Refunded (30 days)"
          value={
            d.refunded30d.length === 0
              ? '—'
              : d.refunded30d.map((r) => money(r.amount, r.currency)).join(' · ')
          }
          hint={`${count(sum('Refunds'))} ${sum('Refunds') === 1 ? 'refund' : 'refunds'}`}
          testId="refunded-30d"
        />
      </SimpleGrid>

      <SimpleGrid cols={{ base: 1, lg: 2 }} spacing="md">
        <ChartFigure
          title="Active subscriptions by plan and market"
          columns={['Market', 'Plan', 'Product', 'Status', 'Subscriptions']}
          rows={d.activeSubscriptions.map((g) => [
            g.market,
            g.planCode,
            g.productCode,
            g.status,
            count(g.count),
          ])}
        >
          <ResponsiveContainer>
            <BarChart data={plans.rows} accessibilityLayer={false}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis
                dataKey="plan"
                tick={{ fontSize: 11 }}
                interval={0}
                angle={-15}
                textAnchor="end"
                height={50}
              />
              <YAxis allowDecimals={false} width={40} />
              <Tooltip {...TOOLTIP} />
              <Legend />
              {plans.markets.map((m, i) => (
                <Bar
                  isAnimationActive={false}
                  key={m}
                  dataKey={m}
                  stackId="market"
                  fill={COLORS[i % COLORS.length]}
                />
              ))}
            </BarChart>
          </ResponsiveContainer>
        </ChartFigure>

        <ChartFigure
          title="MRR per currency"
          description="Each bar in its own currency (major units), normalised to a month."
          columns={['Currency', 'MRR']}
          rows={d.mrr.map((m) => [m.currency, money(m.amount, m.currency)])}
        >
          <ResponsiveContainer>
            <BarChart data={mrr} accessibilityLayer={false}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="currency" />
              <YAxis width={60} />
              <Tooltip
                {...TOOLTIP}
                formatter={(v, _n, item) =>
                  money(Math.round(Number(v) * minorPerMajor(item.payload.currency)), item.payload.currency)
                }
              />
              <Bar isAnimationActive={false} dataKey="amount" name="MRR" fill={COLORS[0]} />
            </BarChart>
          </ResponsiveContainer>
        </ChartFigure>

        <ChartFigure
          title="New and churned subscriptions, last 30 days"
          columns={['Day', 'New', 'Churned']}
          rows={daily.map((r) => [r.day, count(r.New), count(r.Churned)])}
        >
          <ResponsiveContainer>
            <LineChart data={daily} accessibilityLayer={false}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" tick={{ fontSize: 11 }} minTickGap={16} />
              <YAxis allowDecimals={false} width={40} />
              <Tooltip {...TOOLTIP} />
              <Legend />
              <Line
                isAnimationActive={false}
                type="linear"
                dataKey="New"
                stroke={COLORS[0]}
                dot={false}
                strokeWidth={2}
              />
              <Line
                isAnimationActive={false}
                type="linear"
                dataKey="Churned"
                stroke={COLORS[1]}
                dot={false}
                strokeWidth={2}
              />
            </LineChart>
          </ResponsiveContainer>
        </ChartFigure>

        <ChartFigure
          title="Failed payments and refunds, last 30 days"
          columns={['Day', 'Failed payments', 'Refunds']}
          rows={daily.map((r) => [r.day, count(r['Failed payments']), count(r.Refunds)])}
        >
          <ResponsiveContainer>
            <BarChart data={daily} accessibilityLayer={false}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" tick={{ fontSize: 11 }} minTickGap={16} />
              <YAxis allowDecimals={false} width={40} />
              <Tooltip {...TOOLTIP} />
              <Legend />
              <Bar isAnimationActive={false} dataKey="Failed payments" fill={COLORS[3]} />
              <Bar isAnimationActive={false} dataKey="Refunds" fill={COLORS[2]} />
            </BarChart>
          </ResponsiveContainer>
        </ChartFigure>
      </SimpleGrid>

      <Paper withBorder p="md" component="section" aria-labelledby="dunning-heading">
        <Group justify="space-between" mb="sm">
          <Title order={2} size="h4" id="dunning-heading">
            Dunning queue
          </Title>
          <Badge variant="outline" color={d.dunning.count > 0 ? 'red' : 'gray'}>
            {count(d.dunning.count)} open
          </Badge>
        </Group>
        {d.dunning.invoices.length === 0 ? (
          <Text c="dimmed">No invoice is in dunning.</Text>
        ) : (
          <ScrollTable label={'Dunning queue'} minWidth={560}>
            <Table>
              <Table.Caption>The first {d.dunning.invoices.length} by next retry</Table.Caption>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Customer</Table.Th>
                  <Table.Th>Invoice</Table.Th>
                  <Table.Th ta="right">Amount due</Table.Th>
                  <Table.Th ta="right">Attempts</Table.Th>
                  <Table.Th>Next retry</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {d.dunning.invoices.map((i) => (
                  <Table.Tr key={i.invoice}>
                    <Table.Td>
                      <Anchor component={Link} to={`/admin/customers/${encodeURIComponent(i.customer)}`}>
                        {i.customer}
                      </Anchor>
                    </Table.Td>
                    <Table.Td>{i.invoice}</Table.Td>
                    <Table.Td ta="right">{money(i.amountDue, i.currency)}</Table.Td>
                    <Table.Td ta="right">{count(i.attempts)}</Table.Td>
                    <Table.Td>{dateTime(i.nextAttemptAt)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </ScrollTable>
        )}
      </Paper>
    </Stack>
  );
}

function Stat({
  label,
  value,
  hint,
  testId,
}: {
  label: string;
  value: string;
  hint: string;
  testId?: string;
}) {
  return (
    <Paper withBorder p="md" data-testid={testId}>
      <Text size="sm" c="dimmed">
        {label}
      </Text>
      <Text fw={700} size="xl" style={{ overflowWrap: 'anywhere' }}>
        {value}
      </Text>
      <Text size="xs" c="dimmed">
        {hint}
      </Text>
    </Paper>
  );
}
