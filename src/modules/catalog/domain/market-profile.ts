/**
 * What a market shows its customers besides prices: the locale amounts and dates are formatted in
 * (BCP 47), and the seller its invoices name. Pure: the catalog service stores what this accepts.
 */

/** A BCP 47 tag is at most this long here (RFC 5646 asks for 35; extensions such as -u-nu- need more). */
export const LOCALE_MAX = 64;
/** Seller bounds: a legal name, 1–6 address lines, a tax id (VAT number, EIN, GSTIN…). */
export const SELLER_LEGAL_NAME_MAX = 200;
export const SELLER_ADDRESS_LINES_MAX = 6;
export const SELLER_ADDRESS_LINE_MAX = 100;
export const SELLER_TAX_ID_MAX = 64;

export interface Seller {
  readonly legalName: string;
  /** Address lines, in display order (street, postal code and city, country…). */
  readonly address: readonly string[];
  readonly taxId: string | null;
}

/**
 * The language a market's customers read, by ISO 3166-1 country, where it is one clear language.
 * Other countries get English with their region (`en-XX`: their date and number conventions
 * where CLDR has them, English otherwise).
 */
const LANGUAGE_OF: Readonly<Record<string, string>> = {
  AR: 'es',
  AT: 'de',
  AU: 'en',
  BE: 'nl',
  BG: 'bg',
  BR: 'pt',
  CA: 'en',
  CH: 'de',
  CL: 'es',
  CN: 'zh',
  CO: 'es',
  CZ: 'cs',
  DE: 'de',
  DK: 'da',
  EE: 'et',
  ES: 'es',
  FI: 'fi',
  FR: 'fr',
  GB: 'en',
  GR: 'el',
  HR: 'hr',
  HU: 'hu',
  IE: 'en',
  IN: 'en',
  IS: 'is',
  IT: 'it',
  JP: 'ja',
  KR: 'ko',
  LT: 'lt',
  LU: 'fr',
  LV: 'lv',
  MX: 'es',
  NL: 'nl',
  NO: 'nb',
  NZ: 'en',
  PL: 'pl',
  PT: 'pt',
  RO: 'ro',
  SE: 'sv',
  SG: 'en',
  SI: 'sl',
  SK: 'sk',
  TR: 'tr',
  TW: 'zh',
  UA: 'uk',
  US: 'en',
  ZA: 'en',
};

/** The locale of a market that was given none: `sv-SE` for SE, `en-US` for US, `en-XX` elsewhere. */
export function defaultLocale(countryCode: string): string {
  const language = LANGUAGE_OF[countryCode] ?? 'en';
  try {
    return Intl.getCanonicalLocales(`${language}-${countryCode}`)[0] ?? 'en';
  } catch {
    return 'en';
  }
}

/**
 * A locale as given by a client, in its canonical form (`SV-se` → `sv-SE`), or why it is refused:
 * not a well-formed BCP 47 tag, or one this server's ICU cannot format numbers and dates for.
 */
export function canonicalLocale(tag: string): { ok: true; value: string } | { ok: false; message: string } {
  let canonical: string | undefined;
  try {
    canonical = Intl.getCanonicalLocales(tag)[0];
  } catch {
    return { ok: false, message: `'${tag}' is not a well-formed BCP 47 language tag (e.g. "sv-SE")` };
  }
  if (canonical === undefined || canonical.length > LOCALE_MAX)
    return { ok: false, message: `must be a BCP 47 language tag of at most ${LOCALE_MAX} characters` };
  if (
    Intl.NumberFormat.supportedLocalesOf([canonical]).length !== 1 ||
    Intl.DateTimeFormat.supportedLocalesOf([canonical]).length !== 1
  )
    return { ok: false, message: `'${tag}' is not a locale this server can format amounts and dates in` };
  return { ok: true, value: canonical };
}

/** Address lines as stored (one text column): joined by newlines, which no line contains. */
export const joinAddress = (lines: readonly string[]): string => lines.join('\n');
export const splitAddress = (stored: string): string[] => stored.split('\n');
