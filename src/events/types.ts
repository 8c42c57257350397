import { assert } from '../kernel/assert.js';
import { invalid } from '../kernel/errors.js';

/**
 * Every event the platform emits: a closed list, so a consumer (webhook endpoint, broker stream,
 * `type=` filter) can be checked against it. `<object>.<what happened>`, one dot.
 */
export const EVENT_TYPES = [
  'subscription.created',
  'subscription.trial_will_end',
  'subscription.activated',
  'subscription.renewed',
  'subscription.changed',
  'subscription.past_due',
  'subscription.paused',
  'subscription.resumed',
  'subscription.canceled',
  'subscription.expired',
  'invoice.created',
  'invoice.finalized',
  'invoice.paid',
  'invoice.uncollectible',
  'invoice.voided',
  'payment.succeeded',
  'payment.failed',
  'payment.refunded',
  'entitlement.updated',
  'webhook_endpoint.disabled',
  'checkout_session.completed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);
/** The part before the dot: what `type=subscription.*` selects. */
export const EVENT_GROUPS: ReadonlySet<string> = new Set(EVENT_TYPES.map((t) => t.split('.')[0]!));

export function isEventType(value: string): value is EventType {
  return KNOWN_TYPES.has(value);
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** `data` of an event: the object it is about (ids and amounts), plus e.g. `previousAttributes`. */
export interface EventData {
  object: JsonObject;
  [key: string]: JsonValue;
}

/** A `type=` filter: one type, or every type of a group (`subscription.*`). */
export type TypeFilter = { type: EventType } | { group: string };

/** Parses the `type` query parameter; anything that names no event type is a 400 naming `type`. */
export function parseTypeFilter(value: string): TypeFilter {
  if (value.endsWith('.*')) {
    const group = value.slice(0, -2);
    if (EVENT_GROUPS.has(group)) return { group };
    throw invalid(
      'type',
      `'${value}' names no event types; groups are ${[...EVENT_GROUPS].join(', ')}`,
      'query',
    );
  }
  if (isEventType(value)) return { type: value };
  throw invalid('type', `'${value}' is not an event type (or a group such as 'subscription.*')`, 'query');
}

/** Serialised `data` of one event at most: events carry ids and amounts, not documents. */
export const EVENT_DATA_BYTES_MAX = 256 * 1024;
const DATA_DEPTH_MAX = 32;

/**
 * Keys that carry a person's name or email. Events leave the platform (webhooks, a broker) and
 * are kept for months, while personal data lives only sealed in the customers module (ADR 0012):
 * a key like `email`, `billingEmail`, `name` or `firstName` in an event is a bug.
 */
export function isPersonalKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  return k.includes('email') || k.endsWith('name');
}

/**
 * Asserts `data` is plain JSON with no personal keys at any depth, and bounded in size and
 * depth. Returns its serialised form (what is stored). A failure is a bug in the caller.
 */
export function checkEventData(data: EventData): string {
  assert(
    typeof data === 'object' && data !== null && !Array.isArray(data),
    'event data must be an object with `object`',
  );
  assert(
    typeof data.object === 'object' && data.object !== null && !Array.isArray(data.object),
    'event data.object must be an object',
  );
  walk(data, 'data', 0);
  const text = JSON.stringify(data);
  assert(
    Buffer.byteLength(text, 'utf8') <= EVENT_DATA_BYTES_MAX,
    `event data over ${EVENT_DATA_BYTES_MAX} bytes`,
  );
  return text;
}

function walk(value: unknown, path: string, depth: number): void {
  assert(depth <= DATA_DEPTH_MAX, `event data nested deeper than ${DATA_DEPTH_MAX} at ${path}`);
  // undefined: an absent optional field, dropped by JSON.stringify.
  if (value === null || value === undefined || typeof value === 'string' || typeof value === 'boolean')
    return;
  if (typeof value === 'number') {
    assert(Number.isFinite(value), `event data ${path} is not a finite number`);
    return;
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) walk(item, `${path}[${i}]`, depth + 1);
    return;
  }
  assert(
    typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype,
    `event data ${path} is not JSON (${typeof value})`,
  );
  for (const [key, item] of Object.entries(value)) {
    assert(!isPersonalKey(key), `event data ${path}.${key}: events carry ids, never names or emails`);
    walk(item, `${path}.${key}`, depth + 1);
  }
}
