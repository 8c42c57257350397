import { SIGNATURE_HEADER, signatureHeader } from './domain/signature.js';
import { type SendResult, send } from './sender.js';
import type { ClaimedDelivery, WebhookService } from './service.js';
import { resolveTarget, TargetRefused } from './target.js';

export const USER_AGENT = 'Reprise-Webhooks/1';

export interface DispatcherOptions {
  /** Attempts in flight on this node at most (`REPRISE_WEBHOOK_CONCURRENCY`). */
  concurrency: number;
  /** Attempts in flight to one endpoint on this node at most. */
  perEndpoint?: number;
  /** One attempt, resolution included (`REPRISE_WEBHOOK_TIMEOUT_MS`). */
  timeoutMs: number;
  /** How often due deliveries are looked for when nothing wakes the dispatcher. */
  pollMs?: number;
  /** Deliveries one claim takes at most. */
  claimMax?: number;
  /** Sends one attempt (tests may wrap it); default: `send`. */
  send?: typeof send;
  log?: (message: string, error?: unknown) => void;
}

export const PER_ENDPOINT_DEFAULT = 4;
const POLL_MS_DEFAULT = 1_000;
const CLAIM_MAX_DEFAULT = 100;
/** A claim outlives its attempt's timeout by this much before another node may take it over. */
const LEASE_MARGIN_MS = 30_000;

/**
 * Sends due webhook deliveries (ADR 0019). Claims them in batches (a short statement, SKIP
 * LOCKED, a lease), POSTs each with no transaction open, and records each result in its own short
 * transaction. At most `concurrency` attempts in flight on this node and `perEndpoint` to one
 * endpoint, each bounded by `timeoutMs`: a slow endpoint holds its own slots only, never a
 * transaction nor another endpoint's deliveries.
 */
export class WebhookDispatcher {
  readonly #service: WebhookService;
  readonly #concurrency: number;
  readonly #perEndpoint: number;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #claimMax: number;
  readonly #send: typeof send;
  readonly #log: (message: string, error?: unknown) => void;
  readonly #busy = new Map<string, number>();
  readonly #tasks = new Set<Promise<void>>();
  #inFlight = 0;
  #running = false;
  #pumping = false;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(service: WebhookService, opts: DispatcherOptions) {
    this.#service = service;
    this.#concurrency = opts.concurrency;
    this.#perEndpoint = opts.perEndpoint ?? PER_ENDPOINT_DEFAULT;
    this.#timeoutMs = opts.timeoutMs;
    this.#pollMs = opts.pollMs ?? POLL_MS_DEFAULT;
    this.#claimMax = opts.claimMax ?? CLAIM_MAX_DEFAULT;
    this.#send = opts.send ?? send;
    this.#log = opts.log ?? (() => undefined);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#unsubscribe = this.#service.onDue(() => this.#wake());
    const tick = () => {
      this.#wake();
      if (this.#running) {
        this.#timer = setTimeout(tick, this.#pollMs);
        this.#timer.unref();
      }
    };
    tick();
  }

  /** Stops claiming and waits for the attempts in flight (each bounded by the timeout). */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#unsubscribe?.();
    await Promise.allSettled([...this.#tasks]);
  }

  /**
   * One claim, its attempts run to completion (tests, with a manual clock). Returns how many
   * deliveries were attempted.
   */
  async runOnce(): Promise<number> {
    const claimed = await this.#claim();
    await Promise.allSettled(claimed.map((d) => this.#launch(d)));
    return claimed.length;
  }

  #wake(): void {
    if (!this.#running) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump()
      .catch((error: unknown) => this.#log('webhook claim failed', error))
      .finally(() => {
        this.#pumping = false;
        if (this.#again && this.#running) {
          this.#again = false;
          this.#wake();
        }
      });
  }

  async #pump(): Promise<void> {
    while (this.#running) {
      this.#again = false;
      const free = this.#concurrency - this.#inFlight;
      if (free <= 0) return;
      const want = Math.min(free, this.#claimMax);
      const claimed = await this.#claim(want);
      for (const d of claimed) void this.#launch(d);
      if (claimed.length < want) return;
    }
  }

  async #claim(
    want = Math.min(this.#concurrency - this.#inFlight, this.#claimMax),
  ): Promise<ClaimedDelivery[]> {
    if (want <= 0) return [];
    return this.#service.claim({
      total: want,
      perEndpoint: this.#perEndpoint,
      busy: this.#busy,
      leaseMs: this.#timeoutMs + LEASE_MARGIN_MS,
    });
  }

  #launch(d: ClaimedDelivery): Promise<void> {
    this.#inFlight++;
    this.#busy.set(d.endpointId, (this.#busy.get(d.endpointId) ?? 0) + 1);
    const task = this.#attempt(d)
      .catch((error: unknown) => this.#log('webhook attempt could not be recorded', error))
      .finally(() => {
        this.#inFlight--;
        const n = (this.#busy.get(d.endpointId) ?? 1) - 1;
        if (n <= 0) this.#busy.delete(d.endpointId);
        else this.#busy.set(d.endpointId, n);
        this.#tasks.delete(task);
        // A slot is free (for this endpoint too): claim more at once. Claims never overlap on a
        // node (the pump coalesces wake-ups), so this is one claim at a time however busy.
        this.#wake();
      });
    this.#tasks.add(task);
    return task;
  }

  async #attempt(d: ClaimedDelivery): Promise<void> {
    const result = await this.#deliver(d);
    await this.#service.record(d, result);
  }

  /** One attempt: resolve and check the host again, connect to the address checked, POST. */
  async #deliver(d: ClaimedDelivery): Promise<SendResult> {
    if (d.secrets.length === 0) return { ok: false, status: null, error: 'endpoint has no secret' };
    const started = Date.now();
    let target: Awaited<ReturnType<typeof resolveTarget>>;
    try {
      target = await withTimeout(
        resolveTarget(d.url, this.#service.allowCidrs, this.#service.resolve),
        this.#timeoutMs,
      );
    } catch (error) {
      if (error instanceof TargetRefused) return { ok: false, status: null, error: error.message };
      return { ok: false, status: null, error: `resolution failed: ${(error as Error).message}` };
    }
    const remaining = Math.max(1, this.#timeoutMs - (Date.now() - started));
    const t = Math.floor(this.#service.clock.now().getTime() / 1000);
    return this.#send(
      target,
      d.body,
      {
        'Content-Type': 'application/json',
        'User-Agent': USER_AGENT,
        [SIGNATURE_HEADER]: signatureHeader(t, d.body, d.secrets),
      },
      remaining,
    );
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
