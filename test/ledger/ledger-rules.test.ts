import { describe, expect, it } from 'vitest';
import { accountCode, checkAccountKey } from '../../src/modules/ledger/domain/chart.js';
import { checkTransaction, postingsHash, reversed } from '../../src/modules/ledger/domain/transaction.js';

const clearing = { type: 'provider_clearing' as const, owner: 'sim-a', currency: 'SEK' };
const revenue = { type: 'revenue' as const, currency: 'SEK' };
const tax = { type: 'tax_payable' as const, currency: 'SEK' };

describe('ledger transaction rules (checked before any SQL)', () => {
  it('accepts a balanced sale: clearing 139.00 = revenue 111.20 + VAT 27.80', () => {
    expect(
      checkTransaction({
        idempotencyKey: 'k',
        postings: [
          { account: clearing, debit: 13900 },
          { account: revenue, credit: 11120 },
          { account: tax, credit: 2780 },
        ],
      }),
    ).toEqual([]);
  });

  it('refuses one posting, an unbalanced set, both or no sides, and non-positive amounts', () => {
    expect(
      checkTransaction({ idempotencyKey: 'k', postings: [{ account: clearing, debit: 1 }] }),
    ).toContainEqual({
      path: 'postings',
      message: 'at least two postings are required',
    });
    expect(
      checkTransaction({
        idempotencyKey: 'k',
        postings: [
          { account: clearing, debit: 100 },
          { account: revenue, credit: 99 },
        ],
      }),
    ).toEqual([{ path: 'postings', message: 'debits and credits differ by 1 in SEK' }]);
    expect(
      checkTransaction({
        idempotencyKey: 'k',
        postings: [
          { account: clearing, debit: 100, credit: 100 },
          { account: revenue },
          { account: tax, credit: -5 },
          { account: tax, credit: 1.5 },
        ],
      }).map((e) => e.path),
    ).toEqual(['postings[0]', 'postings[1]', 'postings[2].credit', 'postings[3].credit']);
  });

  it('bounds each posting by its currency: 8 digits of minor units, 12 for IDR', () => {
    const pair = (currency: string, amount: number) =>
      checkTransaction({
        idempotencyKey: 'k',
        postings: [
          { account: { type: 'transfer_test', owner: 'a', currency }, debit: amount },
          { account: { type: 'transfer_test', owner: 'b', currency }, credit: amount },
        ],
      });
    expect(pair('USD', 99_999_999)).toEqual([]);
    expect(pair('USD', 100_000_000)).toEqual([
      {
        path: 'postings[0].debit',
        message: 'must be an integer in minor units between 1 and 99999999 for USD',
      },
      {
        path: 'postings[1].credit',
        message: 'must be an integer in minor units between 1 and 99999999 for USD',
      },
    ]);
    expect(pair('USD', Number.MAX_SAFE_INTEGER)).toHaveLength(2);
    expect(pair('IDR', 999_999_999_999)).toEqual([]);
    expect(pair('IDR', 1_000_000_000_000)).toHaveLength(2);
  });

  it('balances per currency, not across currencies', () => {
    const errors = checkTransaction({
      idempotencyKey: 'k',
      postings: [
        { account: clearing, debit: 100 },
        { account: { type: 'revenue', currency: 'EUR' }, credit: 100 },
      ],
    });
    expect(errors.map((e) => e.message).sort()).toEqual([
      'debits and credits differ by -100 in EUR',
      'debits and credits differ by 100 in SEK',
    ]);
  });

  it('knows which accounts need an owner', () => {
    expect(checkAccountKey({ type: 'customer_receivable', currency: 'SEK' })).toBe(
      'customer_receivable needs a customer owner',
    );
    expect(checkAccountKey({ type: 'revenue', owner: 'cus_1', currency: 'SEK' })).toBe(
      'revenue has no owner',
    );
    expect(checkAccountKey(clearing)).toBeNull();
    expect(accountCode(clearing)).toBe('provider_clearing:sim-a:SEK');
    expect(accountCode(revenue)).toBe('revenue:-:SEK');
  });

  it('hashes what moves, not the order it is listed in', () => {
    const a = {
      idempotencyKey: 'k',
      postings: [
        { account: clearing, debit: 5 },
        { account: revenue, credit: 5 },
      ],
    };
    const b = {
      idempotencyKey: 'k',
      postings: [
        { account: revenue, credit: 5 },
        { account: clearing, debit: 5 },
      ],
    };
    const c = {
      idempotencyKey: 'k',
      postings: [
        { account: clearing, debit: 6 },
        { account: revenue, credit: 6 },
      ],
    };
    expect(postingsHash(a)).toBe(postingsHash(b));
    expect(postingsHash(a)).not.toBe(postingsHash(c));
    expect(reversed(a.postings)).toEqual([
      { account: clearing, credit: 5 },
      { account: revenue, debit: 5 },
    ]);
  });
});
