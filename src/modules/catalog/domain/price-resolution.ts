import { fail, ok, type Result } from '../../../kernel/result.js';

export interface PriceEntry {
  currency: string;
  /** Market id; absent for a price that applies to every market billing in this currency. */
  marketId: string | null;
  amountMinor: number;
}

export interface PriceVersion {
  id: string;
  version: number;
  /** null for version 1: in force from the beginning of time. */
  effectiveAt: Date | null;
  /** When existing subscribers move to this version; null means the same as effectiveAt. */
  existingSubscribersFrom: Date | null;
  prices: PriceEntry[];
}

export interface ResolvedPrice {
  amountMinor: number;
  currency: string;
  priceVersionId: string;
  version: number;
  /** Whether a market-specific price won over the currency price. */
  source: 'market' | 'currency';
}

export interface PriceQuery {
  market: { id: string; currency: string };
  /** The instant being priced: sign-up time for a new subscriber, period start for an existing one. */
  at: Date;
  /** When the subscriber signed up; absent for a new subscriber. */
  subscribedAt?: Date | null;
}

const startsAt = (v: PriceVersion): number =>
  v.effectiveAt ? v.effectiveAt.getTime() : Number.NEGATIVE_INFINITY;
const existingFrom = (v: PriceVersion): number =>
  v.existingSubscribersFrom ? v.existingSubscribersFrom.getTime() : startsAt(v);

/**
 * The version in force for a subscriber at `at`.
 * - New subscriber: the latest version whose effectiveAt ≤ at.
 * - Existing subscriber (signed up at j): the later of the version they signed up on (latest with
 *   effectiveAt ≤ j) and the latest version that has reached existing subscribers by `at`
 *   (existingSubscribersFrom ≤ at). They never go back to an older price, and a newer one reaches
 *   them only from its existingSubscribersFrom (grandfathering).
 */
export function versionInForce(
  versions: readonly PriceVersion[],
  query: PriceQuery,
): PriceVersion | undefined {
  const sorted = [...versions].sort((a, b) => a.version - b.version);
  const at = query.at.getTime();
  const latest = (pred: (v: PriceVersion) => boolean): PriceVersion | undefined => sorted.filter(pred).at(-1);
  if (!query.subscribedAt) return latest((v) => startsAt(v) <= at);
  const joined = query.subscribedAt.getTime();
  const signedUpOn = latest((v) => startsAt(v) <= joined);
  const reached = latest((v) => existingFrom(v) <= at && startsAt(v) <= at);
  if (!signedUpOn) return reached;
  if (!reached) return signedUpOn;
  return reached.version > signedUpOn.version ? reached : signedUpOn;
}

/**
 * "The price of plan P for customer C at time t": the version in force (see versionInForce), then
 * within it the customer's market price before the price of the market's currency.
 */
export function resolvePrice(
  versions: readonly PriceVersion[],
  query: PriceQuery,
): Result<ResolvedPrice, 'price_not_found'> {
  const version = versionInForce(versions, query);
  if (!version) return fail('price_not_found', `no price version is in force at ${query.at.toISOString()}`);
  const { id: marketId, currency } = query.market;
  const marketPrice = version.prices.find((p) => p.marketId === marketId && p.currency === currency);
  const currencyPrice = version.prices.find((p) => p.marketId === null && p.currency === currency);
  const chosen = marketPrice ?? currencyPrice;
  if (!chosen) {
    return fail(
      'price_not_found',
      `price version ${version.version} has no ${currency} price for this market`,
    );
  }
  return ok({
    amountMinor: chosen.amountMinor,
    currency,
    priceVersionId: version.id,
    version: version.version,
    source: marketPrice ? 'market' : 'currency',
  });
}
