/**
 * The payment provider port: what Reprise needs from any PSP. Every call carries the caller's
 * idempotency key (the provider deduplicates on it) and is bounded by a timeout, so a timeout
 * followed by a retry with the same key can never charge twice; "already done" answers are
 * success. Adapters translate one vendor's API to this.
 */
export interface AttachInput {
  token: string;
  idempotencyKey: string;
}

export type AttachResult =
  | { ok: true; providerMethodId: string; brand: string; last4: string }
  | { ok: false; declineCode: string };

export interface ChargeInput {
  providerMethodId: string;
  amountMinor: number;
  currency: string;
  /** false: authorize only, capture later. */
  capture: boolean;
  idempotencyKey: string;
  /** Shown in the provider's reports (e.g. our payment id, for reconciliation). */
  metadata: Record<string, string>;
}

export type ChargeResult =
  | { status: 'succeeded' | 'authorized'; providerPaymentId: string; feeMinor: number }
  | { status: 'declined'; declineCode: string; providerPaymentId: string | null };

export interface RefundResult {
  providerRefundId: string;
  amountMinor: number;
}

/** A provider's view of one payment, as webhooks and status lookups deliver it. */
export interface ProviderPaymentSnapshot {
  providerPaymentId: string;
  /** The idempotency key the charge was created with: our link back to the payment. */
  idempotencyKey: string;
  amountMinor: number;
  currency: string;
  status: 'authorized' | 'succeeded' | 'failed' | 'voided';
  declineCode: string | null;
  feeMinor: number;
  /**
   * `idempotencyKey`: the key the refund was requested with (our refund id), null for a refund
   * made at the provider directly. It, never the amount, links a provider refund to ours.
   */
  refunds: Array<{ providerRefundId: string; amountMinor: number; idempotencyKey: string | null }>;
  dispute: {
    providerDisputeId: string;
    status: 'open' | 'won' | 'lost';
    amountMinor: number;
    feeMinor: number;
  } | null;
}

export interface ProviderEvent {
  id: string;
  type: string;
  payment: ProviderPaymentSnapshot;
}

/**
 * Why a call did not give an answer:
 * - `unavailable`: the provider certainly did not process it (refused, outage, circuit open);
 *   another provider may be tried;
 * - `ambiguous`: it may have been processed (timeout, 5xx after sending): only a retry with the
 *   same key or a status lookup can tell; never fail over to another provider.
 */
export class ProviderError extends Error {
  constructor(
    readonly kind: 'unavailable' | 'ambiguous' | 'rejected',
    message: string,
    readonly provider: string,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}

/**
 * A provider's hosted card fields (as Stripe Elements): a page on the provider's own origin that a
 * hosted checkout page embeds in an iframe. It tokenizes the card with its provider and hands the
 * parent page a token through the `reprise-card:*` postMessage protocol (see
 * simulator/elements.ts), so card numbers never reach Reprise. Another provider plugs in by serving
 * a frame that speaks the same protocol and answering this from its adapter.
 */
export interface CardElements {
  /** The provider kind the frame's tokens are attached with (`simulator`). */
  readonly kind: string;
  /** The frame's origin: the only one the parent page accepts its messages from. */
  readonly origin: string;
  /** The frame's URL, without query; the page adds `?parentOrigin=<its origin>&locale=<bcp47>`. */
  readonly url: string;
}

export interface PaymentProvider {
  /** Instance id, e.g. `simulator-a`. */
  readonly id: string;
  /** Vendor kind, e.g. `simulator`: what a client names when attaching a method. */
  readonly kind: string;
  /** The provider's hosted card fields, when it has them. */
  readonly cardElements?: CardElements;
  /**
   * The longest one call may take, every retry of the adapter included: after it (plus a margin)
   * no request of that call can still be processed, so a lookup that finds nothing is final.
   */
  readonly callBudgetMs: number;
  attach(input: AttachInput): Promise<AttachResult>;
  charge(input: ChargeInput): Promise<ChargeResult>;
  capture(providerPaymentId: string, idempotencyKey: string): Promise<ChargeResult>;
  void(providerPaymentId: string, idempotencyKey: string): Promise<void>;
  refund(providerPaymentId: string, amountMinor: number, idempotencyKey: string): Promise<RefundResult>;
  /** The payment created with this idempotency key, or null when the provider has none. */
  lookup(idempotencyKey: string): Promise<ProviderPaymentSnapshot | null>;
  /** Verifies the signature and parses an inbound webhook; throws on a bad or stale signature. */
  parseWebhook(rawBody: string, headers: Record<string, string | string[] | undefined>): ProviderEvent;
}
