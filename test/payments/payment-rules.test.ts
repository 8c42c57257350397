import { describe, expect, it } from 'vitest';
import { checkTransaction } from '../../src/modules/ledger/domain/transaction.js';
import {
  captureEntry,
  disputeClosedEntry,
  disputeOpenedEntry,
  feeEntry,
  refundEntry,
  refundTaxPart,
} from '../../src/modules/payments/domain/entries.js';
import { deriveStatus } from '../../src/modules/payments/domain/status.js';
import { taxOfOneOff } from '../../src/modules/payments/domain/tax.js';

const at = new Date('2026-01-01T00:00:00Z');
// 99.99 EUR with 19 % VAT included: 15.96 tax (1596.47 → 1596).
const p = { id: 'pay_1', provider: 'sim-a', currency: 'EUR', amountMinor: 9999, taxMinor: 1596 };

describe('payment ledger entries', () => {
  it('every entry of a payment life balances and carries a key derived from its cause', () => {
    const entries = [
      captureEntry(p, at),
      feeEntry(p, 320, at)!,
      refundEntry(p, 're_1', 3333, refundTaxPart(p, 0, 0, 3333), at),
      disputeOpenedEntry(p, 'dp_1', 6666, 1500, at),
      disputeClosedEntry(p, 'dp_1', 'lost', 6666, at)!,
    ];
    for (const e of entries) expect(checkTransaction(e)).toEqual([]);
    expect(entries.map((e) => e.idempotencyKey)).toEqual([
      'payment:pay_1:captured',
      'payment:pay_1:fee',
      'refund:re_1:succeeded',
      'dispute:dp_1:opened',
      'dispute:dp_1:lost',
    ]);
  });

  it('a zero tax leg is left out rather than posted', () => {
    const untaxed = captureEntry({ ...p, taxMinor: 0 }, at);
    expect(untaxed.postings.map((x) => x.account.type)).toEqual(['provider_clearing', 'revenue']);
    expect(feeEntry(p, 0, at)).toBeNull();
  });

  it('tax refunded in parts adds up to the tax collected, exactly', () => {
    const parts = [1000, 2500, 3333, 3166];
    let refunded = 0;
    let taxBack = 0;
    for (const amount of parts) {
      const part = refundTaxPart(p, refunded, taxBack, amount);
      refunded += amount;
      taxBack += part;
    }
    expect(refunded).toBe(9999);
    expect(taxBack).toBe(1596);
    // 33.33 of 99.99 gives back a third of 15.96: 5.32.
    expect(refundTaxPart(p, 0, 0, 3333)).toBe(532);
  });

  it('a lost dispute is written off as bad debt; a won one returns the funds to clearing', () => {
    const lost = disputeClosedEntry(p, 'dp_1', 'lost', 6666, at)!;
    const won = disputeClosedEntry(p, 'dp_1', 'won', 6666, at)!;
    expect(lost.postings[0]).toEqual({ account: { type: 'bad_debt', currency: 'EUR' }, debit: 6666 });
    expect(won.postings[0]).toEqual({
      account: { type: 'provider_clearing', owner: 'sim-a', currency: 'EUR' },
      debit: 6666,
    });
  });
});

describe('payment state machine', () => {
  const base = { amountMinor: 1000, amountRefundedMinor: 0, dispute: null };
  it.each([
    [{ ...base, base: 'processing' as const }, 'processing'],
    [{ ...base, base: 'succeeded' as const }, 'succeeded'],
    [{ ...base, base: 'succeeded' as const, amountRefundedMinor: 1 }, 'partially_refunded'],
    [{ ...base, base: 'succeeded' as const, amountRefundedMinor: 1000 }, 'refunded'],
    [{ ...base, base: 'succeeded' as const, amountRefundedMinor: 400, dispute: 'open' as const }, 'disputed'],
    [{ ...base, base: 'succeeded' as const, dispute: 'won' as const }, 'dispute_won'],
    [{ ...base, base: 'succeeded' as const, dispute: 'lost' as const }, 'dispute_lost'],
    [{ ...base, base: 'failed' as const }, 'failed'],
    [{ ...base, base: 'voided' as const }, 'voided'],
  ])('%o is %s', (facts, status) => {
    expect(deriveStatus(facts)).toBe(status);
  });
});

describe('one-off tax (BILLING.md § Tax)', () => {
  it.each([
    [
      12500,
      { taxRateBps: 2500, taxInclusive: true },
      { chargedMinor: 12500, taxMinor: 2500, subtotalMinor: 10000 },
    ],
    [
      10000,
      { taxRateBps: 0, taxInclusive: false },
      { chargedMinor: 10000, taxMinor: 0, subtotalMinor: 10000 },
    ],
    [
      10000,
      { taxRateBps: 725, taxInclusive: false },
      { chargedMinor: 10725, taxMinor: 725, subtotalMinor: 10000 },
    ],
    // 9999 × 19 / 119 = 1596.47 → 1596; 1 × 7.25 % = 0.0725 → 0; 7 × 7.25 % = 0.5075 → 1 (half-up)
    [
      9999,
      { taxRateBps: 1900, taxInclusive: true },
      { chargedMinor: 9999, taxMinor: 1596, subtotalMinor: 8403 },
    ],
    [1, { taxRateBps: 725, taxInclusive: false }, { chargedMinor: 1, taxMinor: 0, subtotalMinor: 1 }],
    [7, { taxRateBps: 725, taxInclusive: false }, { chargedMinor: 8, taxMinor: 1, subtotalMinor: 7 }],
  ])('%i at %o', (amount, market, expected) => {
    expect(taxOfOneOff(amount, market)).toEqual(expected);
  });

  it('a refund entry is filed under the refund and names the payment', () => {
    const entry = refundEntry(p, 're_1', 1000, 160, at);
    expect(entry.reference).toBe('re_1');
    expect(entry.description).toBe('refund re_1 of payment pay_1');
  });
});
