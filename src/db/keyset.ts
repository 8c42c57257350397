import { sql } from 'kysely';

/**
 * A keyset position in a newest-first list ordered by (time, id), as the customer timeline merges
 * its sources (reports module): a source answers the items that come after the position.
 */
export interface Before {
  /** Items older than this instant (millisecond precision, as the API's cursors carry it). */
  at: Date;
  /** Items at exactly `at` continue below this id; undefined: see `inclusive`. */
  id?: string | undefined;
  /** Without `id`: whether items at exactly `at` come after the position (true) or before it. */
  inclusive: boolean;
}

/** The column truncated to milliseconds: what a cursor (a JS Date) can state exactly. */
const ms = (column: string) => sql`date_trunc('milliseconds', ${sql.ref(column)})`;

/** `column < at`, `column <= at`, or `(column, id) < (at, id)`, at millisecond precision. */
export function olderThan(column: string, idColumn: string, before: Before | undefined) {
  if (!before) return sql<boolean>`true`;
  if (before.id !== undefined) {
    return sql<boolean>`(${ms(column)} < ${before.at} OR (${ms(column)} = ${before.at} AND ${sql.ref(idColumn)} < ${before.id}))`;
  }
  return before.inclusive
    ? sql<boolean>`${ms(column)} <= ${before.at}`
    : sql<boolean>`${ms(column)} < ${before.at}`;
}

/** `ORDER BY` the column, newest first, at the precision `olderThan` compares. */
export const newestFirst = (column: string) => sql`${ms(column)} DESC`;
