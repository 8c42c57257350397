import { describe, expect, it } from 'vitest';
import {
  finalizeEntry,
  invoiceNumber,
  invoiceSeries,
  paidEntry,
  voidEntry,
} from '../../src/modules/billing/domain/entries.js';
import type { TransactionSpec } from '../../src/modules/ledger/domain/transaction.js';
import { captureEntry } from '../../src/modules/payments/domain/entries.js';

const at = new Date('2027-01-15T00:00:00Z');
const inv = {
  id: 'in_1',
  customerId: 'cus_1',
  currency: 'SEK',
  totalMinor: 10900,
  taxMinor: 2180,
  netMinor: 8720,
};

/** Net balance per account (debit positive) over these transactions. */
function net(...specs: TransactionSpec[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of specs) {
    for (const p of s.postings) {
      const key = `${p.account.type}:${p.account.owner ?? '-'}`;
      out[key] = (out[key] ?? 0) + (p.debit ?? 0) - (p.credit ?? 0);
    }
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== 0));
}

describe('ledger entries of an invoice', () => {
  it('finalise + capture + paid: clearing = total, deferred revenue = net, tax = tax; receivable and revenue 0', () => {
    const f = finalizeEntry(inv, at)!;
    const capture = captureEntry(
      { id: 'pay_1', provider: 'simulator-a', currency: 'SEK', amountMinor: 10900, taxMinor: 2180 },
      at,
    );
    const p = paidEntry(inv, { id: 'pay_1', amountMinor: 10900, taxMinor: 2180 }, at);
    // Each transaction balances: its debits equal its credits.
    for (const s of [f, capture, p]) expect(Object.values(net(s)).reduce((a, b) => a + b, 0)).toBe(0);
    expect(net(f, capture, p)).toEqual({
      'provider_clearing:simulator-a': 10900,
      'deferred_revenue:-': -8720,
      'tax_payable:-': -2180,
    });
    expect([f.idempotencyKey, p.idempotencyKey]).toEqual(['invoice:in_1:finalize', 'invoice:in_1:paid']);
  });

  it('void reverses the finalisation exactly; a 0 invoice books nothing; tax 0 leaves no tax leg', () => {
    const f = finalizeEntry(inv, at)!;
    const v = voidEntry(inv, at)!;
    expect(v.idempotencyKey).toBe('invoice:in_1:void');
    expect(net(f, v)).toEqual({});
    expect(finalizeEntry({ ...inv, totalMinor: 0, taxMinor: 0, netMinor: 0 }, at)).toBeNull();
    expect(
      finalizeEntry({ ...inv, currency: 'USD', totalMinor: 1199, taxMinor: 0, netMinor: 1199 }, at)!.postings,
    ).toHaveLength(2);
  });

  it('numbers: gapless series per market and year, TEST- for test clocks', () => {
    expect(invoiceNumber(invoiceSeries('SE', at, false), 42)).toBe('SE-2027-000042');
    expect(invoiceNumber(invoiceSeries('US', new Date('2026-12-31T23:59:59Z'), true), 1)).toBe(
      'TEST-US-2026-000001',
    );
  });
});
