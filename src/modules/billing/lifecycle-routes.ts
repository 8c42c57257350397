import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemDto, problemResponses } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import type { PaymentService } from '../payments/service.js';
import { SubscriptionActions } from './actions.js';
import { subscriptionDto, toSubscriptionDto } from './routes.js';
import type { BillingService } from './service.js';

export const atBody = z
  .object({
    // An ISO-8601 instant with its offset, validated as a calendar date (2027-02-30 is refused, not
    // read as Mar 2 as `new Date` would).
    at: z.iso
      .datetime({ offset: true })
      .max(40)
      .optional()
      .describe("ISO-8601 instant, not before the customer's now (default: now); a later one is scheduled"),
  })
  .nullish();

/**
 * Cancel, reactivate, members, pause and resume of a subscription (ADR 0014, "Cancel, pause, members"). Each
 * answers the subscription as it is after the change.
 */
export function lifecycleRoutes(
  app: FastifyInstance,
  deps: { billing: BillingService; payments: PaymentService; uow: UnitOfWork },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const actions = new SubscriptionActions(deps);
  const dto = toSubscriptionDto;
  const tags = ['Subscriptions'];
  const params = z.object({ id: z.string().min(1).max(64) });

  r.post(
    '/v1/subscriptions/:id/cancel',
    {
      schema: {
        tags,
        summary: 'Cancel a subscription, now or at the end of its term',
        description:
          "`timing` defaults to the plan's `cancelTiming`, else `end_of_term`: the subscription keeps its " +
          'status and access until the period end (the trial end while trialing, never charged), `cancelAt` ' +
          'says when, `reactivate` undoes it until then. `immediate` ends it now; `refund: "prorated"` ' +
          '(immediate only, else 400) refunds the unused part of the paid period to the payment that paid ' +
          'it. past_due and paused subscriptions end now whatever the timing, and their open invoices are ' +
          'voided. 409 invalid_state for a canceled, expired or incomplete subscription (an unpaid sign-up ' +
          'expires by itself).',
        params,
        body: z
          .object({
            timing: z.enum(['immediate', 'end_of_term']).optional(),
            refund: z.enum(['none', 'prorated']).optional().describe('Default none'),
          })
          .nullish(),
        response: { 200: subscriptionDto, ...problemResponses },
      },
      config: { scope: 'subscriptions:write', action: 'subscriptions.cancel', resourceType: 'subscription' },
    },
    (req, reply) =>
      actions.cancel(req, reply, req.params.id, { timing: req.body?.timing, refund: req.body?.refund }, dto),
  );

  r.post(
    '/v1/subscriptions/:id/reactivate',
    {
      schema: {
        tags,
        summary: 'Undo a scheduled cancel before it takes effect',
        description: '409 invalid_state when no cancel is scheduled or it has taken effect.',
        params,
        response: { 200: subscriptionDto, ...problemResponses },
      },
      config: {
        scope: 'subscriptions:write',
        action: 'subscriptions.reactivate',
        resourceType: 'subscription',
      },
    },
    (req, reply) => actions.reactivate(req, reply, req.params.id, dto),
  );

  r.post(
    '/v1/subscriptions/:id/members',
    {
      schema: {
        tags,
        summary: 'Add a member to a family or duo subscription',
        description:
          "The product's seats hold the owner and up to seats − 1 members: one more is 409 invalid_state " +
          "naming the seats; a member already there 409 already_exists; the owner's own externalId 400. " +
          'Only while trialing, active or past_due (else 409).',
        params,
        body: z.object({ externalId: z.string().min(1).max(255) }),
        response: { 201: subscriptionDto, ...problemResponses },
      },
      config: {
        scope: 'subscriptions:write',
        action: 'subscriptions.members.add',
        resourceType: 'subscription',
      },
    },
    (req, reply) => actions.addMember(req, reply, req.params.id, req.body.externalId, dto),
  );

  r.delete(
    '/v1/subscriptions/:id/members/:externalId',
    {
      schema: {
        tags,
        summary: 'Remove a member (their access ends at once)',
        description: '404 when the external id is not a member of this subscription.',
        params: params.extend({ externalId: z.string().min(1).max(255) }),
        response: { 200: subscriptionDto, ...problemResponses },
      },
      config: {
        scope: 'subscriptions:write',
        action: 'subscriptions.members.remove',
        resourceType: 'subscription',
      },
    },
    (req, reply) => actions.removeMember(req, reply, req.params.id, req.params.externalId, dto),
  );

  r.post(
    '/v1/subscriptions/:id/pause',
    {
      schema: {
        tags,
        summary: 'Pause an active subscription, now or at `at`',
        description:
          'The unused part of the current period becomes account credit (tax included) on an invoice of ' +
          'its own (`subscription_pause`); the subscription is `paused` (its last period kept) and entitles ' +
          'nobody. Only `active` without a scheduled cancel (else 409), `at` inside the current period. A ' +
          'future `at` is checked now and scheduled: the answer is the subscription unchanged.',
        params,
        body: atBody,
        response: { 200: subscriptionDto, ...problemResponses },
      },
      config: { scope: 'subscriptions:write', action: 'subscriptions.pause', resourceType: 'subscription' },
    },
    (req, reply) => actions.pause(req, reply, req.params.id, req.body?.at, dto),
  );

  r.post(
    '/v1/subscriptions/:id/resume',
    {
      schema: {
        tags,
        summary: 'Resume a paused subscription, now or at `at`',
        description:
          'A period [r, next boundary of the same grid), prorated, on a `subscription_resume` invoice that ' +
          'spends the account credit first; what is left is charged to the default payment method. Paid → ' +
          '`active`; declined → 402 payment_declined with `declineCode`, `subscription` (now `past_due`), ' +
          '`invoice` and `payment`. 202 when the provider did not answer in time (retry with the same ' +
          'Idempotency-Key). Only `paused` (else 409). A future `at` is scheduled.',
        params,
        body: atBody,
        response: {
          200: subscriptionDto,
          202: subscriptionDto,
          ...problemResponses,
          402: problemDto.describe('payment_declined, with declineCode and subscription'),
        },
      },
      config: { scope: 'subscriptions:write', action: 'subscriptions.resume', resourceType: 'subscription' },
    },
    (req, reply) => actions.resume(req, reply, req.params.id, req.body?.at, dto),
  );
}
