import { z } from 'zod';
import { invalid } from '../kernel/errors.js';

export const LIST_LIMIT_MAX = 100;

/** `limit` and `cursor` of every list endpoint. */
export const pageQuery = z.object({
  // Digits only: `1e1`, `0x10`, ` 5` or `5.0` are not a page size (Number() would take them).
  limit: z
    .string()
    .regex(/^[0-9]{1,3}$/, 'must be a whole number from 1 to 100')
    .transform(Number)
    .pipe(z.number().int().min(1).max(LIST_LIMIT_MAX))
    .default(20)
    .describe('Page size, 1 to 100'),
  cursor: z.string().max(200).optional().describe('The `nextCursor` of the previous page'),
});

export const listOf = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), nextCursor: z.string().nullable() });

/**
 * Cursors are opaque to clients: base64url of the last id seen. Ids sort by creation time, so
 * "after this id" is a stable keyset position (no offsets that shift under inserts).
 */
export function encodeCursor(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof parsed.after === 'string' && parsed.after.length <= 100) return parsed.after;
  } catch {
    // fall through to the error below
  }
  throw invalid('cursor', 'is not a cursor returned by this API', 'query');
}

/** Services fetch `limit + 1` rows; the extra row tells whether there is a next page. */
export function toPage<T extends { id: string }, D>(rows: T[], limit: number, dto: (row: T) => D) {
  const data = rows.slice(0, limit);
  const last = data.at(-1);
  return { data: data.map(dto), nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}
