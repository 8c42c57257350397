import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemDto, problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import type { PaymentService } from '../payments/service.js';
import { SubscriptionActions } from './actions.js';
import { subscriptionDto, toSubscriptionDto } from './routes.js';
import type { BillingService } from './service.js';

/**
 * `POST /v1/subscriptions/{id}/change` and `/change/preview` (ADR 0014, "Plan changes"), registered
 * by `billingRoutes` with its subscription DTO.
 */
export const changeBody = z.object({
  plan: z.string().min(1).max(255).describe('Plan id or code'),
  timing: z
    .enum(['immediate', 'end_of_term'])
    .optional()
    .describe(
      "Default: the target plan's changeTiming, else immediate for another billing period or an upgrade, end_of_term for a downgrade. Ignored during a trial (immediate and free).",
    ),
  prorationUnit: z.enum(['day', 'second']).optional().describe('Default: day'),
});

export const previewDto = z.object({
  subscription: z.string(),
  plan: z.string(),
  timing: z.enum(['immediate', 'end_of_term']),
  effectiveAt: timestamp,
  invoice: z
    .object({
      currency: z.string(),
      subtotal: z.number().int(),
      tax: z.number().int(),
      total: z.number().int(),
      amountDue: z.number().int(),
      lines: z.array(
        z.object({
          kind: z.string(),
          description: z.string(),
          periodStart: timestamp,
          periodEnd: timestamp,
          amount: z.number().int(),
        }),
      ),
    })
    .nullable()
    .describe(
      'Immediate: the invoice the change bills now. End of term: the renewal invoice at effectiveAt, with the account credit as it stands now. Null during a trial (free) or when going back to the current plan.',
    ),
  nextRenewal: timestamp,
});

export function changeRoutes(
  app: FastifyInstance,
  deps: { billing: BillingService; payments: PaymentService; uow: UnitOfWork },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { billing } = deps;
  const actions = new SubscriptionActions(deps);
  const params = z.object({ id: z.string().min(1).max(64) });

  r.post(
    '/v1/subscriptions/:id/change',
    {
      schema: {
        tags: ['Subscriptions'],
        summary: 'Change the plan of a subscription',
        description:
          'Immediate (active): one invoice with a proration_credit for the unused time of the old plan and a ' +
          "proration_charge for the new plan's period containing now (same anchor and billing day), account credit " +
          'applied, charged at once; a negative total becomes account credit. End of term: stored as ' +
          '`pendingChange`, applied and billed at the period end. During a trial: immediate and free. 402 ' +
          'payment_declined when the charge is declined (the change stays applied, the subscription past_due); ' +
          '409 invalid_state when past_due, canceled, with a scheduled cancel, or when the new plan has too few ' +
          'seats; 400 naming `plan` for the current plan with no change pending.',
        params,
        body: changeBody,
        response: {
          200: subscriptionDto,
          202: subscriptionDto,
          ...problemResponses,
          402: problemDto.describe('payment_declined, with declineCode, subscription and invoice'),
        },
      },
      config: { scope: 'subscriptions:write', action: 'subscriptions.change', resourceType: 'subscription' },
    },
    (req, reply) => actions.change(req, reply, req.params.id, req.body, toSubscriptionDto),
  );

  r.post(
    '/v1/subscriptions/:id/change/preview',
    {
      schema: {
        tags: ['Subscriptions'],
        summary: 'Preview a plan change',
        description:
          'What `POST /v1/subscriptions/{id}/change` with the same body would do now, computed by the same ' +
          'function; nothing is written.',
        params,
        body: changeBody,
        response: { 200: previewDto, ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) => billing.previewChange(req.params.id, req.body),
  );
}
