import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

/**
 * Prefixed, time-sortable ids (`cus_01JD…`): a ULID (48-bit millisecond time + 80 random bits,
 * monotonic within a millisecond) behind a resource prefix. Sorting ids sorts by creation time,
 * which is what cursor pagination relies on.
 */
export const ID_PREFIXES = {
  apiKey: 'key',
  auditEntry: 'aud',
  market: 'mkt',
  product: 'prod',
  plan: 'plan',
  priceVersion: 'pver',
  customer: 'cus',
  testClock: 'clk',
  job: 'job',
  event: 'evt',
  ledgerAccount: 'acc',
  ledgerTransaction: 'txn',
  payment: 'pay',
  paymentMethod: 'pm',
  refund: 're',
  dispute: 'dp',
  webhookEvent: 'whe',
  request: 'req',
  subscription: 'sub',
  invoice: 'in',
  subscriptionChange: 'sch',
  creditNote: 'cn',
  webhookEndpoint: 'we',
  webhookDelivery: 'wd',
  adminSession: 'ses',
  portalSession: 'ps',
  checkoutSession: 'cs',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

/**
 * ulid's default PRNG asks the OS for one random byte per character (16 calls per id); this one
 * draws the same cryptographic bytes 4 KiB at a time.
 */
const RANDOM_POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolAt = 0;
function pooledRandom(): number {
  if (poolAt >= pool.length) {
    pool = randomFillSync(Buffer.alloc(RANDOM_POOL_BYTES));
    poolAt = 0;
  }
  return pool[poolAt++]! / 256;
}

const nextUlid = monotonicFactory(pooledRandom);

export function newId(kind: IdKind, nowMs: number = Date.now()): string {
  return `${ID_PREFIXES[kind]}_${nextUlid(nowMs)}`;
}

const ID_SHAPE = /^([a-z]+)_[0-9A-HJKMNP-TV-Z]{26}$/;

/** True when `value` looks like an id of this kind (codes never do: see `isCode`). */
/**
 * Whether `value` has the shape of an id of ours (`cus_` + 26 ULID characters, any prefix).
 * Codes and external ids that could be read as an id are refused: "id or code" lookups must
 * never resolve to another resource.
 */
export function looksLikeId(value: string): boolean {
  return ID_SHAPE.test(value);
}

export function isIdOf(kind: IdKind, value: string): boolean {
  const match = ID_SHAPE.exec(value);
  return match !== null && match[1] === ID_PREFIXES[kind];
}
