import type { Services } from '../app.js';
import { hasMeta, setMeta } from '../db/meta.js';
import { transact } from '../db/transaction.js';
import { DomainError } from '../kernel/errors.js';
import { checkoutWorkflow } from '../workflows/checkout.js';
import { commitInTransaction } from '../workflows/commit.js';

/**
 * A few demo listeners with subscriptions, so a newcomer's first `npm start` shows something:
 * paid sign-ups in three markets (tax-inclusive SEK and EUR, tax-exclusive USD), a family plan with
 * members, a trial. They go through the product's own paths (customers, the payment simulator's
 * test cards, the checkout workflow), so their invoices, payments, ledger and events are real.
 * Needs the demo catalog; runs once per deployment (db meta `demo_subscriptions_seeded_at`).
 */
const LISTENERS = [
  { externalId: 'demo-listener-se', market: 'SE', plan: 'premium-individual-yearly', members: [] },
  {
    externalId: 'demo-listener-us',
    market: 'US',
    plan: 'premium-family-monthly',
    members: ['demo-family-member-1', 'demo-family-member-2'],
  },
  { externalId: 'demo-listener-de', market: 'DE', plan: 'premium-duo-yearly', members: ['demo-duo-partner'] },
  { externalId: 'demo-listener-gb', market: 'GB', plan: 'premium-student-monthly', members: [] },
] as const;

export interface SubscriptionSeedResult {
  customers: number;
  subscriptions: number;
  skipped: boolean;
}

export async function seedDemoSubscriptions(services: Services): Promise<SubscriptionSeedResult> {
  if (await hasMeta(services.db, 'demo_subscriptions_seeded_at')) {
    return { customers: 0, subscriptions: 0, skipped: true };
  }
  const result = { customers: 0, subscriptions: 0, skipped: false };
  for (const l of LISTENERS) {
    let customerId: string;
    try {
      customerId = (await services.customers.account(l.externalId)).id;
    } catch (e) {
      if (!(e instanceof DomainError && e.code === 'not_found')) throw e;
      customerId = (
        await transact(services.db, (trx) =>
          services.customers.create({ externalId: l.externalId, market: l.market }, trx),
        )
      ).id;
      result.customers++;
    }
    await services.payments.attachMethod(
      customerId,
      { provider: 'simulator', token: 'tok_visa' },
      `seed:${l.externalId}:card`,
    );
    const out = await checkoutWorkflow.run(
      { customer: customerId, plan: l.plan },
      {
        billing: services.billing,
        payments: services.payments,
        requestKey: `seed:${l.externalId}:subscription`,
        commit: commitInTransaction(services.db),
      },
    );
    const sub = out.value.subscription;
    for (const member of l.members) {
      await transact(services.db, (trx) => services.billing.addMember(trx, sub.id, member)).catch(
        (e: unknown) => {
          // Seeded once already (a crash between the two): the member is there.
          if (!(e instanceof DomainError && e.code === 'already_exists')) throw e;
        },
      );
    }
    result.subscriptions++;
  }
  await transact(services.db, (trx) =>
    setMeta(trx, 'demo_subscriptions_seeded_at', services.clock.now().toISOString()),
  );
  return result;
}
