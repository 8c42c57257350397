import { DAY_MS } from '../../billing/domain/periods.js';

/** The `n` UTC days ending with the day of `asOf`, oldest first, and the instants bounding them. */
export function utcDays(asOf: Date, n: number): { days: string[]; from: Date; to: Date } {
  const today = Math.floor(asOf.getTime() / DAY_MS) * DAY_MS;
  const from = today - (n - 1) * DAY_MS;
  const days = Array.from({ length: n }, (_, i) => new Date(from + i * DAY_MS).toISOString().slice(0, 10));
  return { days, from: new Date(from), to: new Date(today + DAY_MS) };
}

/** One entry per day, in the order of `days`, counts from `rows` (absent days: 0). */
export function perDay(
  days: readonly string[],
  rows: ReadonlyArray<{ day: string; count: number }>,
): Array<{ day: string; count: number }> {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.day, (counts.get(r.day) ?? 0) + r.count);
  return days.map((day) => ({ day, count: counts.get(day) ?? 0 }));
}
