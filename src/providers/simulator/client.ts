import { createHmac, timingSafeEqual } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { z } from 'zod';
import { type Clock, systemClock } from '../../kernel/clock.js';
import { PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION } from '../../kernel/money.js';
import {
  type AttachResult,
  type CardElements,
  type ChargeInput,
  type ChargeResult,
  type PaymentProvider,
  ProviderError,
  type ProviderEvent,
  type ProviderPaymentSnapshot,
  type RefundResult,
} from '../port.js';

export interface SimulatorClientOptions {
  id: string;
  baseUrl: string;
  apiKey: string;
  webhookSecret: string;
  timeoutMs?: number;
  /** Retries of one call with the same idempotency key after a timeout or a 5xx. */
  retriesMax?: number;
  retryBaseMs?: number;
  /** Checks webhook timestamps. */
  clock?: Clock;
}

const SIGNATURE_TOLERANCE_S = 300;
/** Connections to one simulator at once (further calls queue in the agent). */
const SOCKETS_MAX = 64;
/** Largest answer read from the simulator. */
const RESPONSE_BYTES_MAX = 1_048_576;

interface SimCharge {
  id: string;
  amount: number;
  currency: string;
  status: 'requires_capture' | 'succeeded' | 'failed' | 'canceled';
  captured: boolean;
  fee: number;
  declineCode: string | null;
  idempotencyKey: string;
  refunds: Array<{ id: string; amount: number; idempotencyKey?: string | null }>;
  dispute: { id: string; status: 'needs_response' | 'won' | 'lost'; amount: number; fee: number } | null;
}

/** The provider port over the PSP simulator's HTTP API. */
export class SimulatorProvider implements PaymentProvider {
  readonly id: string;
  readonly kind = 'simulator';
  readonly callBudgetMs: number;
  /** The simulator's card frame, on its own origin (`GET /elements/card`). */
  readonly cardElements: CardElements;
  readonly #o: Required<SimulatorClientOptions>;
  readonly #base: URL;
  /** Kept-alive connections to the simulator, at most `SOCKETS_MAX` at once. */
  readonly #agent: HttpAgent;

  constructor(options: SimulatorClientOptions) {
    this.id = options.id;
    this.#o = { timeoutMs: 5_000, retriesMax: 3, retryBaseMs: 100, clock: systemClock, ...options };
    this.#base = new URL(this.#o.baseUrl);
    this.cardElements = {
      kind: this.kind,
      origin: this.#base.origin,
      url: new URL('elements/card', `${this.#o.baseUrl.replace(/\/$/, '')}/`).href,
    };
    this.#agent =
      this.#base.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: SOCKETS_MAX })
        : new HttpAgent({ keepAlive: true, maxSockets: SOCKETS_MAX });
    // Every attempt may run into its timeout, with the backoffs between them.
    this.callBudgetMs =
      (this.#o.retriesMax + 1) * this.#o.timeoutMs + this.#o.retryBaseMs * (2 ** this.#o.retriesMax - 1);
  }

  /** The simulator's base URL (no trailing slash): hosted pages load its card frame from there. */
  get baseUrl(): string {
    return this.#o.baseUrl.replace(/\/$/, '');
  }

  /**
   * One logical call: retried with the same idempotency key on timeouts and 5xx (the simulator
   * deduplicates), never on 4xx. What is left unknown after the retries is `ambiguous`.
   */
  async #call(
    method: string,
    path: string,
    body?: unknown,
    idempotencyKey?: string,
  ): Promise<{ status: number; json: unknown }> {
    let lastError = '';
    let maybeProcessed = false;
    for (let attempt = 0; attempt <= this.#o.retriesMax; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, this.#o.retryBaseMs * 2 ** (attempt - 1)));
      try {
        const res = await this.#send(method, path, body === undefined ? undefined : JSON.stringify(body), {
          authorization: `Bearer ${this.#o.apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
        });
        let json: unknown = null;
        try {
          json = JSON.parse(res.text);
        } catch {
          // not JSON: answered as null
        }
        if (res.status === 503) {
          lastError = 'provider unavailable (503)';
          continue;
        }
        if (res.status >= 500) {
          maybeProcessed = true;
          lastError = `provider error ${res.status}`;
          continue;
        }
        if (json === null || typeof json !== 'object' || Array.isArray(json)) {
          // Every answer of the simulator's API is a JSON object. An unreadable success may still
          // have been processed: asked again with the same key (deduplicated), else ambiguous. An
          // unreadable refusal or redirect (not followed) processed nothing.
          if (res.status >= 200 && res.status < 300) {
            maybeProcessed = true;
            lastError = `unreadable answer (${res.status})`;
            continue;
          }
          throw new ProviderError('rejected', `${this.id}: unreadable answer (${res.status})`, this.id);
        }
        return { status: res.status, json };
      } catch (error) {
        if (error instanceof ProviderError) throw error;
        const e = error as Error & { code?: string };
        if (e.code === 'ECONNREFUSED') {
          lastError = 'connection refused';
          continue;
        }
        maybeProcessed = true;
        lastError = e.name === 'TimeoutError' ? `timeout after ${this.#o.timeoutMs} ms` : e.message;
      }
      // Reads and calls without a key are safe to repeat; a keyed write is deduplicated.
    }
    throw new ProviderError(
      maybeProcessed && idempotencyKey ? 'ambiguous' : 'unavailable',
      `${this.id}: ${lastError}`,
      this.id,
    );
  }

  /**
   * One HTTP exchange over a kept-alive connection (node:http: a fraction of fetch's CPU per call,
   * which counts on the renewal path). Rejects with a `TimeoutError` after `timeoutMs`.
   */
  #send(
    method: string,
    path: string,
    body: string | undefined,
    headers: Record<string, string>,
  ): Promise<{ status: number; text: string }> {
    const url = new URL(`${this.#o.baseUrl}${path}`);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: this.#agent,
          headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) },
          signal: AbortSignal.timeout(this.#o.timeoutMs),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            // A provider's answer is small; a runaway one is cut off, not buffered.
            if (size > RESPONSE_BYTES_MAX) req.destroy(new Error(`answer over ${RESPONSE_BYTES_MAX} bytes`));
            else chunks.push(c);
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', (error: Error & { code?: string }) => {
        // The abort of the timeout signal: reported as fetch did, a TimeoutError.
        if (error.name === 'AbortError') {
          const timeout = new Error(`timeout after ${this.#o.timeoutMs} ms`);
          timeout.name = 'TimeoutError';
          reject(timeout);
          return;
        }
        reject(error);
      });
      req.end(body);
    });
  }

  async attach(input: { token: string; idempotencyKey: string }): Promise<AttachResult> {
    const { status, json } = await this.#call(
      'POST',
      '/v1/payment_methods',
      { token: input.token },
      input.idempotencyKey,
    );
    const body = json as {
      id?: string;
      brand?: string;
      last4?: string;
      error?: { decline_code?: string; message?: string };
    };
    if (status === 402) return { ok: false, declineCode: body.error?.decline_code ?? 'card_declined' };
    if (status !== 200 || !body.id)
      throw new ProviderError(
        'rejected',
        `${this.id}: ${body.error?.message ?? `status ${status}`}`,
        this.id,
      );
    return {
      ok: true,
      providerMethodId: body.id,
      brand: body.brand ?? 'unknown',
      last4: body.last4 ?? '0000',
    };
  }

  async charge(input: ChargeInput): Promise<ChargeResult> {
    const { status, json } = await this.#call(
      'POST',
      '/v1/charges',
      {
        amount: input.amountMinor,
        currency: input.currency,
        payment_method: input.providerMethodId,
        capture: input.capture,
        metadata: input.metadata,
      },
      input.idempotencyKey,
    );
    return this.#chargeResult(status, json);
  }

  async capture(providerPaymentId: string, idempotencyKey: string): Promise<ChargeResult> {
    const { status, json } = await this.#call(
      'POST',
      `/v1/charges/${providerPaymentId}/capture`,
      {},
      idempotencyKey,
    );
    return this.#chargeResult(status, json);
  }

  async void(providerPaymentId: string, idempotencyKey: string): Promise<void> {
    const { status, json } = await this.#call(
      'POST',
      `/v1/charges/${providerPaymentId}/void`,
      {},
      idempotencyKey,
    );
    if (status !== 200)
      throw new ProviderError('rejected', `${this.id}: void refused: ${JSON.stringify(json)}`, this.id);
  }

  async refund(
    providerPaymentId: string,
    amountMinor: number,
    idempotencyKey: string,
  ): Promise<RefundResult> {
    const { status, json } = await this.#call(
      'POST',
      '/v1/refunds',
      { charge: providerPaymentId, amount: amountMinor },
      idempotencyKey,
    );
    const body = json as { id?: string; amount?: number; error?: { message?: string } };
    if (status !== 200 || !body.id)
      throw new ProviderError(
        'rejected',
        `${this.id}: refund refused: ${body.error?.message ?? status}`,
        this.id,
      );
    return { providerRefundId: body.id, amountMinor: body.amount ?? amountMinor };
  }

  async lookup(idempotencyKey: string): Promise<ProviderPaymentSnapshot | null> {
    const { status, json } = await this.#call(
      'GET',
      `/v1/charges?idempotency_key=${encodeURIComponent(idempotencyKey)}`,
    );
    if (status !== 200)
      throw new ProviderError('rejected', `${this.id}: lookup refused (${status})`, this.id);
    const charge = (json as { data: SimCharge[] }).data[0];
    return charge ? toSnapshot(charge) : null;
  }

  #chargeResult(status: number, json: unknown): ChargeResult {
    const body = json as SimCharge & { error?: { decline_code?: string; charge?: string; message?: string } };
    if (status === 402)
      return {
        status: 'declined',
        declineCode: body.error?.decline_code ?? 'card_declined',
        providerPaymentId: body.error?.charge ?? null,
      };
    if (status !== 200)
      throw new ProviderError(
        'rejected',
        `${this.id}: ${body.error?.message ?? `status ${status}`}`,
        this.id,
      );
    return {
      status: body.captured ? 'succeeded' : 'authorized',
      providerPaymentId: body.id,
      feeMinor: body.fee,
    };
  }

  parseWebhook(rawBody: string, headers: Record<string, string | string[] | undefined>): ProviderEvent {
    const header = headers['simulator-signature'];
    const value = Array.isArray(header) ? header[0] : header;
    const parts = Object.fromEntries(
      (value ?? '').split(',').map((kv) => kv.split('=', 2) as [string, string]),
    );
    const t = Number(parts.t);
    if (!parts.v1 || !Number.isFinite(t)) throw new Error('missing or malformed Simulator-Signature');
    if (Math.abs(this.#o.clock.now().getTime() / 1000 - t) > SIGNATURE_TOLERANCE_S)
      throw new Error('signature timestamp outside the tolerance');
    const expected = createHmac('sha256', this.#o.webhookSecret).update(`${t}.${rawBody}`).digest();
    const given = Buffer.from(parts.v1, 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new Error('signature does not match');
    // Signed is not well-formed: an event the provider got wrong is refused (400), never a 500.
    const parsed = simEvent.safeParse(JSON.parse(rawBody));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(
        `event is malformed at ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`,
      );
    }
    const event = parsed.data;
    return { id: event.id, type: event.type, payment: toSnapshot(event.data.object) };
  }
}

const minor = z.number().int().nonnegative().max(PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION);
const text = z.string().min(1).max(255);
/** The shape of a simulator event, checked after its signature: amounts bounded like ours. */
const simEvent = z.object({
  id: text,
  type: text,
  data: z.object({
    object: z.object({
      id: text,
      amount: minor,
      currency: z.string().regex(/^[A-Z]{3}$/),
      status: z.enum(['requires_capture', 'succeeded', 'failed', 'canceled']),
      captured: z.boolean(),
      fee: minor,
      declineCode: text.nullable(),
      idempotencyKey: text,
      refunds: z
        .array(z.object({ id: text, amount: minor, idempotencyKey: text.nullable().optional() }))
        .max(1_000),
      dispute: z
        .object({
          id: text,
          status: z.enum(['needs_response', 'won', 'lost']),
          amount: minor,
          fee: minor,
        })
        .nullable(),
    }),
  }),
});

function toSnapshot(c: SimCharge): ProviderPaymentSnapshot {
  return {
    providerPaymentId: c.id,
    idempotencyKey: c.idempotencyKey,
    amountMinor: c.amount,
    currency: c.currency,
    status: c.status === 'requires_capture' ? 'authorized' : c.status === 'canceled' ? 'voided' : c.status,
    declineCode: c.declineCode,
    feeMinor: c.fee,
    refunds: c.refunds.map((r) => ({
      providerRefundId: r.id,
      amountMinor: r.amount,
      idempotencyKey: r.idempotencyKey ?? null,
    })),
    dispute: c.dispute
      ? {
          providerDisputeId: c.dispute.id,
          status: c.dispute.status === 'needs_response' ? 'open' : c.dispute.status,
          amountMinor: c.dispute.amount,
          feeMinor: c.dispute.fee,
        }
      : null,
  };
}
