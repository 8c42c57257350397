import { TEST_CARDS } from './cards.js';

/**
 * The simulator's tokenization (`POST /v1/tokens`, what its card frame calls): Stripe's test card
 * numbers map to the test tokens of cards.ts, so a customer types 4242 4242 4242 4242 in the frame
 * and Reprise only ever sees `tok_visa`. Pure: no I/O, and nothing here keeps or logs a number.
 */
export const TEST_NUMBERS: Readonly<Record<string, string>> = {
  '4242424242424242': 'tok_visa',
  '5555555555554444': 'tok_mastercard',
  '378282246310005': 'tok_amex',
  '4000000000000002': 'tok_chargeDeclined',
  '4000000000009995': 'tok_chargeDeclinedInsufficientFunds',
  '4000000000000069': 'tok_chargeDeclinedExpiredCard',
  '4000000000000127': 'tok_chargeDeclinedIncorrectCvc',
  '4000000000000341': 'tok_chargeCustomerFail',
  '4000000000000119': 'tok_processingError',
};

export interface CardInput {
  number: string;
  expMonth: number | string;
  expYear: number | string;
  cvc: string;
}

export type CardField = 'number' | 'expiry' | 'cvc';

export type TokenResult =
  | {
      ok: true;
      token: string;
      card: { brand: string; last4: string; expMonth: number; expYear: number };
    }
  | { ok: false; status: 400 | 402; code: string; message: string; field: CardField };

/** Whether the digits pass the Luhn check every card number carries. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** The card network a number belongs to, by its leading digits (Visa, Mastercard, Amex). */
export function brandOf(digits: string): string {
  if (/^3[47]/.test(digits)) return 'amex';
  if (/^4/.test(digits)) return 'visa';
  const two = Number(digits.slice(0, 2));
  const four = Number(digits.slice(0, 4));
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) return 'mastercard';
  return 'unknown';
}

const refuse = (
  status: 400 | 402,
  code: string,
  message: string,
  field: CardField,
): Extract<TokenResult, { ok: false }> => ({ ok: false, status, code, message, field });

function monthOf(value: number | string): number | null {
  const text = String(value).trim();
  if (!/^[0-9]{1,2}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 12 ? n : null;
}

function yearOf(value: number | string): number | null {
  const text = String(value).trim();
  if (/^[0-9]{2}$/.test(text)) return 2000 + Number(text);
  if (/^[0-9]{4}$/.test(text)) return Number(text);
  return null;
}

/**
 * The token for a card, or why it is refused, with Stripe's codes and messages: 402 card errors
 * naming the field (a number failing Luhn, a past expiry, a bad CVC: 3 digits, 4 for Amex, a
 * number that is not a test card), 400 for input that is not a card number at all. `now` decides
 * whether the expiry has passed (a card is valid to the end of its month, UTC).
 */
export function tokenizeCard(input: CardInput, now: Date): TokenResult {
  const digits = input.number.replace(/[ ]/g, '');
  if (!/^[0-9]{12,19}$/.test(digits)) {
    return refuse(402, 'invalid_number', 'Your card number is invalid.', 'number');
  }
  if (!luhnValid(digits)) return refuse(402, 'incorrect_number', 'Your card number is incorrect.', 'number');
  const expMonth = monthOf(input.expMonth);
  if (expMonth === null) {
    return refuse(402, 'invalid_expiry_month', "Your card's expiration month is invalid.", 'expiry');
  }
  const expYear = yearOf(input.expYear);
  if (expYear === null || expYear > now.getUTCFullYear() + 50) {
    return refuse(402, 'invalid_expiry_year', "Your card's expiration year is invalid.", 'expiry');
  }
  const validUntil = Date.UTC(expYear, expMonth, 1); // the first instant after the expiry month
  if (validUntil <= now.getTime()) {
    return refuse(402, 'invalid_expiry_year', "Your card's expiration date is in the past.", 'expiry');
  }
  const brand = brandOf(digits);
  const cvcLength = brand === 'amex' ? 4 : 3;
  if (!new RegExp(`^[0-9]{${cvcLength}}$`).test(input.cvc)) {
    return refuse(402, 'invalid_cvc', "Your card's security code is invalid.", 'cvc');
  }
  const token = TEST_NUMBERS[digits];
  const card = token ? TEST_CARDS[token] : undefined;
  if (!token || !card) {
    return refuse(
      402,
      'card_declined',
      'Your card was declined. Your request was in test mode, but used a non test card.',
      'number',
    );
  }
  return { ok: true, token, card: { brand: card.brand, last4: digits.slice(-4), expMonth, expYear } };
}
