import type { Before } from '../../../db/keyset.js';
import { invalid } from '../../../kernel/errors.js';

/**
 * The customer timeline (reports module): one newest-first list merged from the parts each module
 * answers (subscriptions, invoices, payments, refunds, ledger transactions, entitlement changes,
 * events, audit entries). Items are ordered by (at, kind, id), descending; a cursor is the
 * position of the last item of a page, and each part is asked only for what comes after it.
 */

/** Every kind, in the order that breaks ties between items at the same instant (descending). */
export const TIMELINE_KINDS = [
  'audit',
  'entitlement',
  'event',
  'invoice',
  'ledger_transaction',
  'payment',
  'refund',
  'subscription',
] as const;
export type TimelineKind = (typeof TIMELINE_KINDS)[number];

export interface Positioned {
  /** Millisecond precision, as the cursor states it. */
  at: Date;
  kind: TimelineKind;
  id: string;
}

const ID_SHAPE = /^[a-z]{1,12}_[0-9A-HJKMNP-TV-Z]{26}$/;

/** `a` before `b` in the timeline (newest first): negative; after: positive. */
export function compareNewestFirst(a: Positioned, b: Positioned): number {
  const at = b.at.getTime() - a.at.getTime();
  if (at !== 0) return at;
  if (a.kind !== b.kind) return a.kind < b.kind ? 1 : -1;
  return a.id === b.id ? 0 : a.id < b.id ? 1 : -1;
}

/**
 * Merges lists that are each newest first into one, newest first, keeping at most `take` items:
 * a k-way merge (each list is read once, in order).
 */
export function mergeNewestFirst<T extends Positioned>(
  lists: ReadonlyArray<readonly T[]>,
  take: number,
): T[] {
  const heads = lists.map(() => 0);
  const out: T[] = [];
  while (out.length < take) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const candidate = lists[i]![heads[i]!];
      if (candidate === undefined) continue;
      if (best < 0 || compareNewestFirst(candidate, lists[best]![heads[best]!]!) < 0) best = i;
    }
    if (best < 0) break;
    out.push(lists[best]![heads[best]!]!);
    heads[best]! += 1;
  }
  return out;
}

/** What a part of kind `kind` must answer after the position `after`: its items that sort after it. */
export function beforeFor(kind: TimelineKind, after: Positioned | undefined): Before | undefined {
  if (!after) return undefined;
  if (kind === after.kind) return { at: after.at, id: after.id, inclusive: false };
  // At the same instant, kinds sorting lower come later in a newest-first list.
  return { at: after.at, inclusive: kind < after.kind };
}

/** The opaque cursor of a position (base64url JSON). */
export function encodeTimelineCursor(p: Positioned): string {
  return Buffer.from(JSON.stringify({ at: p.at.getTime(), kind: p.kind, id: p.id }), 'utf8').toString(
    'base64url',
  );
}

/** The position of a cursor this API returned; anything else is a 400 naming `cursor`. */
export function decodeTimelineCursor(cursor: string | undefined): Positioned | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
    const { at, kind, id } = parsed;
    if (
      Object.keys(parsed).length === 3 &&
      typeof at === 'number' &&
      Number.isSafeInteger(at) &&
      at >= 0 &&
      at <= 8_640_000_000_000_000 &&
      typeof kind === 'string' &&
      (TIMELINE_KINDS as readonly string[]).includes(kind) &&
      typeof id === 'string' &&
      ID_SHAPE.test(id)
    ) {
      return { at: new Date(at), kind: kind as TimelineKind, id };
    }
  } catch {
    // fall through to the error below
  }
  throw invalid('cursor', 'is not a cursor returned by this API', 'query');
}
