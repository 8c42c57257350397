import { describe, expect, it } from 'vitest';
import { AssertionError } from '../../src/kernel/assert.js';
import { DomainError } from '../../src/kernel/errors.js';
import { creditNote, proratedRefund } from '../../src/modules/billing/domain/credit-note.js';
import { assembleInvoice, type ChargeLine, lineNets } from '../../src/modules/billing/domain/invoice.js';
import {
  dailyAmount,
  deferredAt,
  recognisedBy,
  recognisedOn,
  recognitionForDay,
  recognitionSchedule,
} from '../../src/modules/billing/domain/recognition.js';

const d = (iso: string): Date => new Date(iso);
const line = (kind: ChargeLine['kind'], amountMinor: number): ChargeLine => ({
  kind,
  description: kind,
  periodStart: d('2027-03-15T00:00:00Z'),
  periodEnd: d('2027-04-15T00:00:00Z'),
  amountMinor,
});

describe('invoice arithmetic', () => {
  it('inclusive SE 25 %: total = subtotal 10999, tax = 10999 × 25/125 = 2199.8 → 2200', () => {
    const inv = assembleInvoice({
      currency: 'SEK',
      tax: { rateBps: 2500, inclusive: true },
      lines: [line('recurring', 10999)],
      accountCreditMinor: 0,
    });
    expect(inv).toMatchObject({
      subtotalMinor: 10999,
      taxMinor: 2200,
      totalMinor: 10999,
      netMinor: 8799,
      amountDueMinor: 10999,
      taxRateBps: 2500,
      taxInclusive: true,
    });
    expect(inv.lines.at(-1)).toMatchObject({
      kind: 'tax',
      description: 'Tax 25 % (included)',
      amountMinor: 2200,
    });
  });

  it('exclusive US 7.25 %: 1199 + 86.93 → 87 = 1286; a half rounds up (200 → 14.5 → 15)', () => {
    const us = { rateBps: 725, inclusive: false };
    const inv = assembleInvoice({
      currency: 'USD',
      tax: us,
      lines: [line('recurring', 1199)],
      accountCreditMinor: 0,
    });
    expect([inv.subtotalMinor, inv.taxMinor, inv.totalMinor, inv.netMinor]).toEqual([1199, 87, 1286, 1199]);
    const half = assembleInvoice({
      currency: 'USD',
      tax: us,
      lines: [line('fixed', 200)],
      accountCreditMinor: 0,
    });
    expect(half.taxMinor).toBe(15);
  });

  it('subtotal sums recurring, fixed, prorations and discounts; tax and credit_applied stay out of it', () => {
    const inv = assembleInvoice({
      currency: 'USD',
      tax: { rateBps: 1000, inclusive: false },
      lines: [
        line('recurring', 2000),
        line('fixed', 500),
        line('proration_credit', -300),
        line('proration_charge', 400),
        line('discount', -600),
      ],
      accountCreditMinor: 1000,
    });
    // 2000 + 500 − 300 + 400 − 600 = 2000; tax 200; total 2200; credit 1000 applied; 1200 due.
    expect(inv).toMatchObject({
      subtotalMinor: 2000,
      taxMinor: 200,
      totalMinor: 2200,
      creditAppliedMinor: 1000,
      amountDueMinor: 1200,
      creditCreatedMinor: 0,
      accountCreditAfterMinor: 0,
    });
    expect(inv.lines.slice(-2).map((l) => [l.kind, l.amountMinor])).toEqual([
      ['tax', 200],
      ['credit_applied', -1000],
    ]);
  });

  it('applies only the credit needed and keeps the rest', () => {
    const inv = assembleInvoice({
      currency: 'USD',
      tax: { rateBps: 0, inclusive: false },
      lines: [line('recurring', 1199)],
      accountCreditMinor: 5000,
    });
    expect([inv.creditAppliedMinor, inv.amountDueMinor, inv.accountCreditAfterMinor]).toEqual([
      1199, 0, 3801,
    ]);
    expect(inv.lines.map((l) => l.kind)).toEqual(['recurring', 'credit_applied']);
  });

  it('turns a negative total into account credit, tax included (US: −1000 − 72.5 → −73 = 1073)', () => {
    const inv = assembleInvoice({
      currency: 'USD',
      tax: { rateBps: 725, inclusive: false },
      lines: [line('proration_credit', -1000)],
      accountCreditMinor: 250,
    });
    expect(inv).toMatchObject({
      subtotalMinor: -1000,
      taxMinor: -73,
      totalMinor: -1073,
      amountDueMinor: 0,
      creditAppliedMinor: 0,
      creditCreatedMinor: 1073,
      accountCreditAfterMinor: 1323,
    });
  });

  it('a trial invoice is one recurring line of 0', () => {
    const inv = assembleInvoice({
      currency: 'SEK',
      tax: { rateBps: 2500, inclusive: true },
      lines: [line('recurring', 0)],
      accountCreditMinor: 300,
    });
    expect([inv.totalMinor, inv.taxMinor, inv.amountDueMinor, inv.creditAppliedMinor]).toEqual([0, 0, 0, 0]);
  });

  it('treats wrong signs and empty invoices as bugs', () => {
    const base = { currency: 'USD', tax: { rateBps: 0, inclusive: false }, accountCreditMinor: 0 };
    expect(() => assembleInvoice({ ...base, lines: [line('recurring', -1)] })).toThrow(AssertionError);
    expect(() => assembleInvoice({ ...base, lines: [line('discount', 1)] })).toThrow(AssertionError);
    expect(() => assembleInvoice({ ...base, lines: [] })).toThrow(AssertionError);
  });

  it('spreads an inclusive tax over the lines so their nets sum to the net', () => {
    const inv = assembleInvoice({
      currency: 'SEK',
      tax: { rateBps: 2500, inclusive: true },
      lines: [line('proration_credit', -3893), line('proration_charge', 6036)],
      accountCreditMinor: 0,
    });
    const nets = lineNets(inv);
    expect(nets.reduce((a, b) => a + b, 0)).toBe(inv.netMinor);
    // −3893 × 429/2143 = −779.3; 6036 × 429/2143 = 1208.3: shares −779, 1208.
    expect(nets).toEqual([-3893 + 779, 6036 - 1208]);
  });
});

describe('revenue recognition', () => {
  const line3 = {
    start: d('2027-03-01T10:00:00Z'),
    end: d('2027-03-04T10:00:00Z'),
    netMinor: 1000,
    currency: 'USD',
  };

  it('recognises 1000 over 3 days as 333, 334, 333 (cumulative rounding, exact)', () => {
    expect(recognitionSchedule(line3).map((r) => [r.day.toISOString().slice(0, 10), r.amountMinor])).toEqual([
      ['2027-03-01', 333],
      ['2027-03-02', 334],
      ['2027-03-03', 333],
    ]);
    expect(recognisedOn(line3, d('2027-03-02T00:00:00Z'))).toBe(334);
    expect(recognisedOn(line3, d('2027-03-04T00:00:00Z'))).toBe(0);
  });

  it('defers what has not been served: a day counts once its date has ended', () => {
    expect(recognisedBy(line3, d('2027-03-01T23:59:59Z'))).toBe(0);
    expect(recognisedBy(line3, d('2027-03-02T00:00:00Z'))).toBe(333);
    expect(deferredAt(line3, d('2027-03-03T05:00:00Z'))).toBe(333);
    expect(recognisedBy(line3, d('2030-01-01T00:00:00Z'))).toBe(1000);
  });

  it('loses no cent over a month: 1199 over 31 days sums to 1199', () => {
    const march = {
      start: d('2027-03-01T00:00:00Z'),
      end: d('2027-04-01T00:00:00Z'),
      netMinor: 1199,
      currency: 'USD',
    };
    const days = recognitionSchedule(march);
    expect(days).toHaveLength(31);
    expect(days.reduce((a, r) => a + r.amountMinor, 0)).toBe(1199);
    expect(dailyAmount(1199, 1, 31)).toBe(39);
  });

  it('aggregates a day per currency, negative lines included', () => {
    const lines = [line3, { ...line3, netMinor: -300 }, { ...line3, currency: 'SEK', netMinor: 3000 }];
    expect(Object.fromEntries(recognitionForDay(lines, d('2027-03-01T00:00:00Z')))).toEqual({
      USD: 233,
      SEK: 1000,
    });
  });
});

describe('credit notes', () => {
  const invoice = { totalMinor: 10999, taxMinor: 2200 };

  it('returns tax in proportion and takes the net from deferred revenue first', () => {
    const first = creditNote({
      invoice,
      paidMinor: 10999,
      refundedBeforeMinor: 0,
      amountMinor: 5000,
      deferredRemainingMinor: 3000,
      reason: 'requested_by_customer',
    });
    // 5000 × 2200/10999 = 1000.09 → 1000; net 4000: 3000 deferred, 1000 revenue.
    expect(first).toMatchObject({
      taxMinor: 1000,
      netMinor: 4000,
      fromDeferredMinor: 3000,
      fromRevenueMinor: 1000,
    });
    const rest = creditNote({
      invoice,
      paidMinor: 10999,
      refundedBeforeMinor: 5000,
      amountMinor: 5999,
      deferredRemainingMinor: 0,
      reason: 'requested_by_customer',
    });
    expect(first.taxMinor + rest.taxMinor).toBe(2200);
  });

  it('refuses more than is left to refund, naming the amount', () => {
    const refuse = () =>
      creditNote({
        invoice,
        paidMinor: 10999,
        refundedBeforeMinor: 10000,
        amountMinor: 1000,
        deferredRemainingMinor: 0,
        reason: 'duplicate',
      });
    expect(refuse).toThrow(DomainError);
    expect(refuse).toThrow(/amount: must be an integer between 1 and 999/);
  });

  it('refunds the unused part of the paid period on an immediate cancel (10 of 31 days of 1286 → 415)', () => {
    const period = { start: d('2027-03-01T00:00:00Z'), end: d('2027-04-01T00:00:00Z') };
    // 1286 × 10/31 = 414.84 → 415.
    expect(
      proratedRefund({
        paidMinor: 1286,
        refundedBeforeMinor: 0,
        period,
        at: d('2027-03-22T13:00:00Z'),
        unit: 'day',
      }),
    ).toBe(415);
    expect(
      proratedRefund({
        paidMinor: 1286,
        refundedBeforeMinor: 1000,
        period,
        at: d('2027-03-22T13:00:00Z'),
        unit: 'day',
      }),
    ).toBe(286);
    expect(
      proratedRefund({
        paidMinor: 1286,
        refundedBeforeMinor: 0,
        period,
        at: d('2027-04-01T00:00:00Z'),
        unit: 'day',
      }),
    ).toBe(0);
  });
});
