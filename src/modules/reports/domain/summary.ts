import { formatMajor } from '../../../kernel/money.js';

/** One line a person reads in the console's timeline, per kind. Amounts in major units with the code. */

const amount = (minor: number, currency: string) => `${formatMajor(minor, currency)} ${currency}`;

export function subscriptionSummary(s: { planCode: string; status: string; cancelAt: Date | null }): string {
  return `Subscription to ${s.planCode}: ${s.status}${s.cancelAt ? ` (cancels ${s.cancelAt.toISOString().slice(0, 10)})` : ''}`;
}

export function invoiceSummary(i: {
  number: string | null;
  id: string;
  reason: string;
  totalMinor: number;
  currency: string;
  status: string;
}): string {
  return `Invoice ${i.number ?? i.id} (${i.reason.replace(/_/g, ' ')}): ${amount(i.totalMinor, i.currency)}, ${i.status}`;
}

export function paymentSummary(p: {
  amountMinor: number;
  currency: string;
  status: string;
  declineCode: string | null;
}): string {
  return `Payment of ${amount(p.amountMinor, p.currency)}: ${p.status}${p.declineCode ? ` (${p.declineCode})` : ''}`;
}

export function refundSummary(r: {
  amountMinor: number;
  currency: string;
  status: string;
  failureReason: string | null;
}): string {
  return `Refund of ${amount(r.amountMinor, r.currency)}: ${r.status}${r.failureReason ? ` (${r.failureReason})` : ''}`;
}

/** A transaction moves its debits' total (per currency: a transaction normally has one). */
export function ledgerSummary(t: {
  description: string | null;
  postings: ReadonlyArray<{ currency: string; debitMinor: number }>;
}): string {
  const totals = new Map<string, number>();
  for (const p of t.postings) totals.set(p.currency, (totals.get(p.currency) ?? 0) + p.debitMinor);
  const moved = [...totals].map(([currency, minor]) => amount(minor, currency)).join(', ');
  return `${t.description ?? 'Ledger transaction'}: ${moved}`;
}

/** An `entitlement.updated` event's object: what the subscription entitles, and until when. */
export function entitlementSummary(object: Record<string, unknown>): string {
  const features = Array.isArray(object.features) ? object.features.filter((f) => typeof f === 'string') : [];
  const until = typeof object.validUntil === 'string' ? ` until ${object.validUntil}` : '';
  const what = features.length > 0 ? `: ${features.join(', ')}` : '';
  return `Entitlement ${object.active === true ? 'active' : 'ended'}${what}${object.active === true ? until : ''}`;
}

export function eventSummary(e: { type: string; aggregate: { type: string; id: string } }): string {
  return `${e.type} (${e.aggregate.type} ${e.aggregate.id})`;
}

export function auditSummary(a: { action: string; status: number; apiKey: string }): string {
  return `${a.action} by ${a.apiKey}: ${a.status}`;
}
