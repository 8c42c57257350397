import type { Executor } from '../../db/schema.js';
import { DomainError, notFound } from '../../kernel/errors.js';
import { type BillingContext, lockSubscription } from './context.js';
import { checkAddMember } from './domain/entitlement.js';
import { billingTables, type SubscriptionsTable } from './tables.js';

/**
 * Members of a family or duo subscription (ADR 0014): the owner plus up to seats − 1 members share
 * the product's features while the subscription entitles the owner. Each change bumps the
 * subscription's version and emits `subscription.changed` with the previous member list.
 */

/** States in which members can be added: those that entitle (or will again after a retry). */
const MEMBER_STATES: ReadonlySet<SubscriptionsTable['status']> = new Set(['trialing', 'active', 'past_due']);

async function membersOf(trx: Executor, subscriptionId: string): Promise<string[]> {
  const rows = await billingTables(trx)
    .selectFrom('subscription_members')
    .select('external_id')
    .where('subscription_id', '=', subscriptionId)
    .orderBy('created_at')
    .orderBy('external_id')
    .execute();
  return rows.map((r) => r.external_id);
}

export async function addMember(
  ctx: BillingContext,
  trx: Executor,
  id: string,
  externalId: string,
): Promise<void> {
  const sub = await lockSubscription(billingTables(trx), id);
  if (!sub) throw notFound('subscription', id);
  if (!MEMBER_STATES.has(sub.status)) {
    throw new DomainError(
      'invalid_state',
      `Members can be added to a trialing, active or past_due subscription; this one is ${sub.status}.`,
      { extra: { subscriptionStatus: sub.status, operation: 'add_member' } },
    );
  }
  const [product, owner, members] = await Promise.all([
    ctx.catalog.getProduct(sub.product_id, trx),
    ctx.customers.account(sub.customer_id, trx),
    membersOf(trx, sub.id),
  ]);
  checkAddMember({ seats: product.seats, ownerExternalId: owner.externalId, members, externalId });
  const now = await ctx.customers.now(sub.customer_id, trx);
  await billingTables(trx)
    .insertInto('subscription_members')
    .values({ subscription_id: sub.id, external_id: externalId, created_at: now })
    .execute();
  await ctx.saveSubscription(
    trx,
    sub,
    {},
    now,
    'subscription.changed',
    { previousAttributes: { members } },
    { membersChanged: true, previousMembers: members },
  );
}

export async function removeMember(
  ctx: BillingContext,
  trx: Executor,
  id: string,
  externalId: string,
): Promise<void> {
  const sub = await lockSubscription(billingTables(trx), id);
  if (!sub) throw notFound('subscription', id);
  const members = await membersOf(trx, sub.id);
  if (!members.includes(externalId)) throw notFound('member', externalId);
  const now = await ctx.customers.now(sub.customer_id, trx);
  await billingTables(trx)
    .deleteFrom('subscription_members')
    .where('subscription_id', '=', sub.id)
    .where('external_id', '=', externalId)
    .execute();
  await ctx.saveSubscription(
    trx,
    sub,
    {},
    now,
    'subscription.changed',
    { previousAttributes: { members } },
    { membersChanged: true, previousMembers: members },
  );
}
