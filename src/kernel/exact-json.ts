import { randomBytes } from 'node:crypto';

/**
 * JSON text of `value` in which every bigint is an exact integer literal, whatever its size.
 * `JSON.stringify` refuses bigints, and a number past 2^53 would be rounded: ledger sums can get
 * there (twelve-digit postings, thousands of them), and a money total must never be rounded.
 * Bigints in the safe range are written as plain numbers.
 */
export function exactJson(value: unknown): string {
  const big: string[] = [];
  // A marker no input can forge: a fresh nonce per call, in a string only this replacer writes.
  const nonce = randomBytes(8).toString('hex');
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'bigint') return v;
    if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
    big.push(v.toString());
    return `${nonce}:${big.length - 1}`;
  });
  if (big.length === 0) return text;
  return text.replace(new RegExp(`"${nonce}:(\\d+)"`, 'g'), (_m, i: string) => big[Number(i)]!);
}
