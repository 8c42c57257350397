/** Dates, money and numbers, always through Intl in the market's (or the browser's) locale. */

/** Decimals of a currency's minor unit, from Intl: 2 for SEK, 0 for JPY, 3 for KWD. */
export function fractionDigits(currency: string): number {
  return (
    new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2
  );
}

/** Minor units per major unit: 100 for SEK, 1 for JPY. */
export function minorPerMajor(currency: string): number {
  return 10 ** fractionDigits(currency);
}

/** `amount` in minor units of `currency`, e.g. (10900, 'SEK', 'sv-SE') → "109,00 kr". */
export function money(amount: number, currency: string, locale?: string): string {
  const digits = fractionDigits(currency);
  return new Intl.NumberFormat(locale, { style: 'currency', currency }).format(amount / 10 ** digits);
}

/** A tax rate in basis points as people write it in a tax note: 2500 → "25", 770 → "7.7". */
export function ratePercent(bps: number, locale?: string): string {
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 2 }).format(bps / 100);
}

export function date(iso: string | Date | null | undefined, locale?: string): string {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' }).format(new Date(iso));
}

export function dateTime(iso: string | Date | null | undefined, locale?: string): string {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }).format(
    new Date(iso),
  );
}

export function count(n: number, locale?: string): string {
  return new Intl.NumberFormat(locale).format(n);
}

const PERIOD: Record<string, string> = { day: 'day', week: 'week', month: 'month', year: 'year' };
export function per(period: string): string {
  return PERIOD[period] ?? period;
}
