import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { eventDto, eventToDto } from '../../events/routes.js';
import { pageQuery } from '../../http/pagination.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import { isoSeconds } from '../../kernel/clock.js';
import { grants, type Scope } from '../api-keys/scopes.js';
import { auditEntryDto, toAuditEntryDto } from '../audit/routes.js';
import { invoiceDto, subscriptionDto, toInvoiceDto, toSubscriptionDto } from '../billing/routes.js';
import type { CatalogService } from '../catalog/service.js';
import { toTransactionDto, transactionDto } from '../ledger/routes.js';
import { paymentDto, refundDto, toPaymentDto, toRefundDto } from '../payments/routes.js';
import {
  auditSummary,
  entitlementSummary,
  eventSummary,
  invoiceSummary,
  ledgerSummary,
  paymentSummary,
  refundSummary,
  subscriptionSummary,
} from './domain/summary.js';
import type { TimelineKind } from './domain/timeline.js';
import { DASHBOARD_DAYS, type ReportsService, type TimelineEntry } from './service.js';

const dayCount = z
  .object({ day: z.string().describe('YYYY-MM-DD (UTC)'), count: z.number().int() })
  .meta({ id: 'DayCount' });
const days = (what: string) =>
  z
    .array(dayCount)
    .describe(`${what} per UTC day: the last ${DASHBOARD_DAYS} days, oldest first, zeros included`);

const dashboardDto = z
  .object({
    asOf: timestamp.describe('When these figures were computed (a node reuses them for a few seconds)'),
    activeSubscriptions: z
      .array(
        z
          .object({
            plan: z.string().describe('Plan id'),
            planCode: z.string(),
            product: z.string().describe('Product id'),
            productCode: z.string(),
            market: z.string().describe('Market code'),
            status: z.enum(['trialing', 'active', 'past_due']),
            count: z.number().int(),
          })
          .meta({ id: 'ActiveSubscriptionGroup' }),
      )
      .describe('Trialing, active and past_due subscriptions by plan, market and status'),
    mrr: z
      .array(
        z
          .object({
            currency: z.string(),
            amount: z.number().int().describe('Minor units per month, net of tax (docs/API.md: MRR)'),
          })
          .meta({ id: 'MrrAmount' }),
      )
      .describe('Monthly recurring revenue per currency'),
    new30d: days('Subscriptions started (trials included, failed sign-ups not)'),
    churned30d: days('Subscriptions canceled (by the day they ended)'),
    failedPayments30d: days('Payments that failed'),
    refunds30d: days('Refunds that succeeded (by the day they were asked)'),
    refunded30d: z
      .array(
        z
          .object({
            currency: z.string(),
            amount: z.number().int().describe('Minor units refunded (succeeded refunds)'),
          })
          .meta({ id: 'RefundedAmount' }),
      )
      .describe(`Money refunded in the last ${DASHBOARD_DAYS} days per currency`),
    dunning: z.object({
      count: z.number().int().describe('Open invoices of past_due subscriptions'),
      invoices: z
        .array(
          z
            .object({
              invoice: z.string(),
              customer: z.string(),
              subscription: z.string(),
              amountDue: z.number().int(),
              currency: z.string(),
              attempts: z.number().int().describe('Charge attempts made'),
              nextAttemptAt: timestamp.nullable().describe('The next retry of the dunning schedule'),
            })
            .meta({ id: 'DunningInvoice' }),
        )
        .describe('The first 20 by next retry'),
    }),
  })
  .meta({ id: 'DashboardReport' });

const item = <K extends TimelineKind, T extends z.ZodType>(kind: K, data: T, name: string) =>
  z
    .object({
      at: timestamp.describe('When it happened (millisecond precision)'),
      kind: z.literal(kind),
      id: z.string(),
      summary: z.string().describe('One line for a person'),
      data,
    })
    .meta({ id: name });

const timelineItemDto = z
  .discriminatedUnion('kind', [
    item('subscription', subscriptionDto, 'TimelineSubscription'),
    item('invoice', invoiceDto, 'TimelineInvoice'),
    item('payment', paymentDto, 'TimelinePayment'),
    item('refund', refundDto, 'TimelineRefund'),
    item('ledger_transaction', transactionDto, 'TimelineLedgerTransaction'),
    item('entitlement', eventDto.describe('The entitlement.updated event'), 'TimelineEntitlement'),
    item('event', eventDto, 'TimelineEvent'),
    item('audit', auditEntryDto, 'TimelineAudit'),
  ])
  .meta({ id: 'TimelineItem' });
const timelineDto = z
  .object({ data: z.array(timelineItemDto), nextCursor: z.string().nullable() })
  .meta({ id: 'CustomerTimeline' });

/** Who may see each kind of timeline item: the scope its own list route needs. */
const KIND_SCOPE: Record<TimelineKind, Scope> = {
  subscription: 'subscriptions:read',
  invoice: 'subscriptions:read',
  payment: 'payments:read',
  refund: 'payments:read',
  ledger_transaction: 'ledger:read',
  entitlement: 'entitlements:read',
  event: 'events:read',
  audit: 'admin',
};

/** Timestamps with milliseconds: the timeline orders (and its cursor compares) at that precision. */
const isoMs = (d: Date) => d.toISOString();

export function reportRoutes(
  app: FastifyInstance,
  deps: { reports: ReportsService; catalog: CatalogService },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { reports, catalog } = deps;

  r.get(
    '/v1/reports/dashboard',
    {
      schema: {
        tags: ['Reports'],
        summary: 'The admin dashboard: subscriptions, MRR, new and churned, failed payments, dunning',
        description:
          'Customers on a test clock are left out. MRR follows Stripe and ChartMogul: active and past_due ' +
          'subscriptions at their current price, net of tax, normalised to a month (yearly ÷12, weekly ×52÷12), ' +
          'rounded half-up once per currency (docs/API.md has the rules and a worked example). Computed at most ' +
          'every few seconds per node.',
        response: { 200: dashboardDto, ...problemResponses },
      },
      config: { scope: 'reports:read' },
    },
    async () => {
      const d = await reports.dashboard();
      return {
        asOf: isoSeconds(d.asOf),
        activeSubscriptions: d.activeSubscriptions,
        mrr: d.mrr,
        new30d: d.new30d,
        churned30d: d.churned30d,
        failedPayments30d: d.failedPayments30d,
        refunds30d: d.refunds30d,
        refunded30d: d.refunded30d,
        dunning: {
          count: d.dunning.count,
          invoices: d.dunning.invoices.map((i) => ({
            invoice: i.invoice,
            customer: i.customer,
            subscription: i.subscription,
            amountDue: i.amountDueMinor,
            currency: i.currency,
            attempts: i.attempts,
            nextAttemptAt: i.nextAttemptAt ? isoSeconds(i.nextAttemptAt) : null,
          })),
        },
      };
    },
  );

  r.get(
    '/v1/customers/:id/timeline',
    {
      schema: {
        tags: ['Customers'],
        summary:
          "A customer's timeline, newest first: subscriptions, invoices, payments, ledger, events, audit",
        description:
          'One list merged from every module: subscriptions, invoices with their lines, payments, refunds, ledger ' +
          'transactions, entitlement changes, events and audit entries, newest first by `at` (ties: by kind, ' +
          'then id). Each kind is shown to keys with the scope of its own list (subscriptions:read, ' +
          'payments:read, ledger:read, entitlements:read, events:read; audit entries: admin). Events are kept ' +
          'as long as REPRISE_EVENT_RETENTION_DAYS; ledger, event and audit items are found through the ' +
          "customer's latest 1,000 subscriptions, invoices, payments, refunds and payment methods.",
        params: z.object({ id: z.string().min(1).max(255).describe('Customer id or externalId') }),
        querystring: pageQuery,
        response: { 200: timelineDto, ...problemResponses },
      },
      config: { scope: 'customers:read' },
    },
    async (req) => {
      const scopes = req.principal?.scopes ?? [];
      const page = await reports.timeline(
        req.params.id,
        { limit: req.query.limit, cursor: req.query.cursor },
        (kind) => grants(scopes, KIND_SCOPE[kind]),
      );
      const data = [];
      for (const entry of page.data) data.push(await toItem(entry, catalog));
      return { data, nextCursor: page.nextCursor };
    },
  );
}

async function toItem(e: TimelineEntry, catalog: CatalogService): Promise<z.infer<typeof timelineItemDto>> {
  const base = { at: isoMs(e.at), id: e.id };
  switch (e.kind) {
    case 'subscription': {
      const planCode = await catalog.getPlan(e.value.plan_id).then(
        (p) => p.code,
        () => e.value.plan_id,
      );
      return {
        ...base,
        kind: e.kind,
        summary: subscriptionSummary({ planCode, status: e.value.status, cancelAt: e.value.cancel_at }),
        data: toSubscriptionDto(e.value),
      };
    }
    case 'invoice':
      return {
        ...base,
        kind: e.kind,
        summary: invoiceSummary({
          number: e.value.number,
          id: e.value.id,
          reason: e.value.reason,
          totalMinor: e.value.total_minor,
          currency: e.value.currency,
          status: e.value.status,
        }),
        data: toInvoiceDto(e.value),
      };
    case 'payment':
      return {
        ...base,
        kind: e.kind,
        summary: paymentSummary({
          amountMinor: e.value.amount_minor,
          currency: e.value.currency,
          status: e.value.status,
          declineCode: e.value.decline_code,
        }),
        data: toPaymentDto(e.value),
      };
    case 'refund':
      return {
        ...base,
        kind: e.kind,
        summary: refundSummary({
          amountMinor: e.value.amount_minor,
          currency: e.value.currency,
          status: e.value.status,
          failureReason: e.value.failure_reason,
        }),
        data: toRefundDto(e.value),
      };
    case 'ledger_transaction':
      return { ...base, kind: e.kind, summary: ledgerSummary(e.value), data: toTransactionDto(e.value) };
    case 'entitlement':
      return {
        ...base,
        kind: e.kind,
        summary: entitlementSummary(e.value.data.object as Record<string, unknown>),
        data: eventToDto(e.value),
      };
    case 'event':
      return { ...base, kind: e.kind, summary: eventSummary(e.value), data: eventToDto(e.value) };
    case 'audit':
      return { ...base, kind: e.kind, summary: auditSummary(e.value), data: toAuditEntryDto(e.value) };
  }
}
