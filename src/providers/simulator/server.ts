import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { canonicalJson, sha256Hex } from '../../kernel/canonical-json.js';
import { simulatorFee, TEST_CARDS } from './cards.js';
import { cardElementsRoutes, originOf } from './elements.js';

/**
 * A payment service provider you can run next to Reprise: its own HTTP service with its own state,
 * Stripe-like test tokens and decline codes, idempotency keys on its side, signed webhooks
 * (at least once; duplicated and reordered on request), fault injection and a settlement report.
 * State is in memory: it lives as long as the process, which in the crash tests outlives Reprise.
 */
export interface SimulatorOptions {
  /** Bearer secret Reprise uses to call the simulator. */
  apiKey: string;
  /** Secret the webhooks are signed with (HMAC-SHA256 of "t.body"). */
  webhookSecret: string;
  webhookUrl?: string;
  /** Delay between webhook delivery attempts; grows ×2 per attempt. */
  webhookRetryBaseMs?: number;
  /** Origins of the hosted pages that may embed the card frame (`/elements/card`). */
  pageOrigins?: readonly string[];
  /** `POST /v1/tokens` per client address and minute. */
  tokensPerMinute?: number;
}

export interface Faults {
  latencyMs: number;
  /** Share of requests answered 500 before any processing (safe to retry). */
  errorRate: number;
  /** Share of requests processed, then answered only after `timeoutMs` (the caller times out). */
  timeoutRate: number;
  timeoutMs: number;
  /** Every request answered 503, nothing processed. */
  outage: boolean;
  /** POST requests are parked, unprocessed, until `POST /admin/release` (deterministic race tests). */
  hold: boolean;
}

interface Charge {
  id: string;
  amount: number;
  currency: string;
  paymentMethod: string;
  status: 'requires_capture' | 'succeeded' | 'failed' | 'canceled';
  captured: boolean;
  amountRefunded: number;
  /** `idempotencyKey`: the caller's key of the refund request (a real PSP keeps it as metadata). */
  refunds: Array<{ id: string; amount: number; created: number; idempotencyKey: string | null }>;
  fee: number;
  declineCode: string | null;
  idempotencyKey: string;
  metadata: Record<string, string>;
  dispute: { id: string; status: 'needs_response' | 'won' | 'lost'; amount: number; fee: number } | null;
  created: number;
  capturedAt: number | null;
}

interface StoredResponse {
  hash: string;
  status: number;
  body: unknown;
}

export interface SimulatorEvent {
  id: string;
  type: string;
  created: number;
  data: { object: Charge };
}

const DISPUTE_FEE = 1500;
const WEBHOOK_ATTEMPTS_MAX = 10;

export class SimulatorState {
  readonly paymentMethods = new Map<string, { id: string; token: string; brand: string; last4: string }>();
  readonly charges = new Map<string, Charge>();
  readonly idempotency = new Map<string, StoredResponse>();
  /** Keys whose first answer was already lost once (tok_processingError). */
  readonly flakyAnswered = new Set<string>();
  faults: Faults = {
    latencyMs: 0,
    errorRate: 0,
    timeoutRate: 0,
    timeoutMs: 30_000,
    outage: false,
    hold: false,
  };
  /** Requests parked by the `hold` fault, released in arrival order. */
  readonly held: Array<() => void> = [];
  webhook = { url: undefined as string | undefined, duplicate: false, reorder: false };
  /** Origins of the hosted pages allowed to frame the card frame (each `scheme://host[:port]`). */
  readonly pageOrigins = new Set<string>();
  /** The embedding platform's hosted-page origin, read at each request (it is known once it listens). */
  pageOriginSource: (() => string) | undefined;
  readonly deliveries: Array<{ eventId: string; type: string; attempt: number; status: number | string }> =
    [];
  requests = 0;

  /** Allows pages of `origin` to frame the card frame; refuses anything that is not an origin. */
  addPageOrigin(origin: string): void {
    const normalised = originOf(origin);
    if (normalised === null) throw new Error(`'${origin}' is not an origin (scheme://host[:port])`);
    this.pageOrigins.add(normalised);
  }

  /** Every origin whose pages may frame the card frame now. */
  allowedPageOrigins(): ReadonlySet<string> {
    const current = this.pageOriginSource?.();
    const normalised = current === undefined ? null : originOf(current);
    return normalised === null ? this.pageOrigins : new Set([...this.pageOrigins, normalised]);
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest();
const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;

export async function buildSimulator(
  options: SimulatorOptions,
): Promise<{ app: FastifyInstance; state: SimulatorState }> {
  const state = new SimulatorState();
  state.webhook.url = options.webhookUrl;
  for (const origin of options.pageOrigins ?? []) state.addPageOrigin(origin);
  const retryBaseMs = options.webhookRetryBaseMs ?? 200;
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const pending = new Set<Promise<void>>();

  // ---- webhooks ---------------------------------------------------------------------------
  const sign = (body: string) => {
    const t = Math.floor(Date.now() / 1000);
    return `t=${t},v1=${createHmac('sha256', options.webhookSecret).update(`${t}.${body}`).digest('hex')}`;
  };
  const deliver = async (event: SimulatorEvent) => {
    const url = state.webhook.url;
    if (!url) return;
    const body = JSON.stringify(event);
    for (let attempt = 1; attempt <= WEBHOOK_ATTEMPTS_MAX; attempt++) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'simulator-signature': sign(body) },
          body,
          signal: AbortSignal.timeout(5_000),
        });
        state.deliveries.push({ eventId: event.id, type: event.type, attempt, status: res.status });
        if (res.ok) return;
      } catch (error) {
        state.deliveries.push({
          eventId: event.id,
          type: event.type,
          attempt,
          status: String((error as Error).message),
        });
      }
      await new Promise((r) => setTimeout(r, retryBaseMs * 2 ** (attempt - 1)));
    }
  };
  const emit = (type: string, charge: Charge) => {
    const event: SimulatorEvent = {
      id: id('evt'),
      type,
      created: Math.floor(Date.now() / 1000),
      data: { object: structuredClone(charge) },
    };
    const copies = state.webhook.duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = state.webhook.reorder ? Math.floor(Math.random() * 300) : 0;
      const p = new Promise<void>((r) => setTimeout(r, delay)).then(() => deliver(event));
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
  };

  // ---- helpers ----------------------------------------------------------------------------
  /** Runs `work` once per idempotency key; same key + other body is a 400, as Stripe does. */
  function answerOnce(
    req: FastifyRequest,
    work: () => { status: number; body: unknown },
  ): { status: number; body: unknown; replayed: boolean } {
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || key === '') {
      return {
        status: 400,
        body: { error: { type: 'invalid_request_error', message: 'Idempotency-Key required' } },
        replayed: false,
      };
    }
    const scoped = `${req.routeOptions.url}|${key}`;
    const hash = sha256Hex(canonicalJson({ url: req.url, body: req.body ?? null }));
    const stored = state.idempotency.get(scoped);
    if (stored) {
      if (stored.hash !== hash) {
        return {
          status: 400,
          body: {
            error: {
              type: 'idempotency_error',
              message: 'Keys for idempotent requests can only be used with the same parameters',
            },
          },
          replayed: false,
        };
      }
      return { status: stored.status, body: stored.body, replayed: true };
    }
    const result = work();
    if (result.status < 500) state.idempotency.set(scoped, { hash, ...result });
    return { ...result, replayed: false };
  }

  function idempotent(
    req: FastifyRequest,
    reply: FastifyReply,
    work: () => { status: number; body: unknown },
  ) {
    const answer = answerOnce(req, work);
    if (answer.replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(answer.status).send(answer.body);
  }

  // ---- faults and auth --------------------------------------------------------------------
  const expectedAuth = sha256(`Bearer ${options.apiKey}`);
  app.addHook('onRequest', async (req, reply) => {
    // Every route needs the key, admin ones included, but the card frame and its tokenization,
    // which browsers call (public by declaration on the matched route, outside the faults); faults
    // apply to the API, decided on the matched route (never the raw URL, which the router decodes).
    if (req.routeOptions.config?.public === true) return;
    if (!timingSafeEqual(sha256(req.headers.authorization ?? ''), expectedAuth)) {
      return reply.code(401).send({ error: { type: 'authentication_error', message: 'Invalid API key' } });
    }
    if (!req.routeOptions.url?.startsWith('/v1/')) return;
    state.requests++;
    const f = state.faults;
    if (f.latencyMs > 0) await new Promise((r) => setTimeout(r, f.latencyMs));
    if (f.outage)
      return reply
        .code(503)
        .send({ error: { type: 'api_error', message: 'Service unavailable (simulated outage)' } });
    if (f.errorRate > 0 && Math.random() < f.errorRate) {
      return reply
        .code(500)
        .send({ error: { type: 'api_error', message: 'Simulated error; nothing was processed' } });
    }
    if (f.hold && req.method === 'POST') await new Promise<void>((resolve) => state.held.push(resolve));
  });
  // Timeouts: the request is processed, the answer comes too late.
  app.addHook('onSend', async (req, _reply, payload) => {
    const f = state.faults;
    if (
      req.routeOptions.config?.public !== true &&
      req.url.startsWith('/v1/') &&
      f.timeoutRate > 0 &&
      Math.random() < f.timeoutRate
    ) {
      await new Promise((r) => setTimeout(r, f.timeoutMs));
    }
    return payload;
  });

  // ---- card frame and tokenization (browsers, no API key) ---------------------------------
  await cardElementsRoutes(app, {
    pageOrigins: () => state.allowedPageOrigins(),
    tokensPerMinute: options.tokensPerMinute,
  });

  // ---- API --------------------------------------------------------------------------------
  app.post<{ Body: { token?: string } }>('/v1/payment_methods', (req, reply) =>
    idempotent(req, reply, () => {
      const token = req.body?.token ?? '';
      const card = TEST_CARDS[token];
      if (!card)
        return {
          status: 400,
          body: { error: { type: 'invalid_request_error', message: `No such token: '${token}'` } },
        };
      if (card.attachDecline) {
        return {
          status: 402,
          body: { error: { type: 'card_error', code: 'card_declined', decline_code: card.attachDecline } },
        };
      }
      const pm = { id: id('pm'), token, brand: card.brand, last4: card.last4 };
      state.paymentMethods.set(pm.id, pm);
      return { status: 200, body: { id: pm.id, brand: pm.brand, last4: pm.last4 } };
    }),
  );

  app.post<{
    Body: {
      amount: number;
      currency: string;
      payment_method: string;
      capture?: boolean;
      metadata?: Record<string, string>;
    };
  }>('/v1/charges', async (req, reply) => {
    const key = String(req.headers['idempotency-key'] ?? '');
    const answer = answerOnce(req, () => {
      const { amount, currency, payment_method, capture = true, metadata = {} } = req.body ?? ({} as never);
      const pm = state.paymentMethods.get(payment_method);
      if (!pm)
        return {
          status: 400,
          body: {
            error: { type: 'invalid_request_error', message: `No such payment method: '${payment_method}'` },
          },
        };
      if (!Number.isSafeInteger(amount) || amount <= 0)
        return { status: 400, body: { error: { type: 'invalid_request_error', message: 'Invalid amount' } } };
      const card = TEST_CARDS[pm.token]!;
      const charge: Charge = {
        id: id('ch'),
        amount,
        currency,
        paymentMethod: pm.id,
        status: card.chargeDecline ? 'failed' : capture ? 'succeeded' : 'requires_capture',
        captured: !card.chargeDecline && capture,
        amountRefunded: 0,
        refunds: [],
        fee: !card.chargeDecline && capture ? simulatorFee(amount) : 0,
        declineCode: card.chargeDecline ?? null,
        idempotencyKey: key,
        metadata,
        dispute: null,
        created: Math.floor(Date.now() / 1000),
        capturedAt: !card.chargeDecline && capture ? Date.now() : null,
      };
      state.charges.set(charge.id, charge);
      emit(
        charge.status === 'failed'
          ? 'charge.failed'
          : charge.status === 'succeeded'
            ? 'charge.succeeded'
            : 'charge.authorized',
        charge,
      );
      if (card.chargeDecline) {
        return {
          status: 402,
          body: {
            error: {
              type: 'card_error',
              code: 'card_declined',
              decline_code: card.chargeDecline,
              charge: charge.id,
            },
          },
        };
      }
      return { status: 200, body: charge };
    });
    const pm = state.paymentMethods.get(req.body?.payment_method ?? '');
    if (pm && TEST_CARDS[pm.token]?.flaky && !state.flakyAnswered.has(key) && answer.status < 500) {
      // Processed, but this first answer is lost: the caller sees a 500 and must retry.
      state.flakyAnswered.add(key);
      return reply.code(500).send({
        error: { type: 'api_error', message: 'Simulated processing error (the charge was processed)' },
      });
    }
    if (answer.replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(answer.status).send(answer.body);
  });

  app.get<{ Params: { id: string } }>('/v1/charges/:id', async (req, reply) => {
    const charge = state.charges.get(req.params.id);
    return (
      charge ?? reply.code(404).send({ error: { type: 'invalid_request_error', message: 'No such charge' } })
    );
  });
  app.get<{ Querystring: { idempotency_key?: string } }>('/v1/charges', async (req) => {
    const key = req.query.idempotency_key;
    return { data: [...state.charges.values()].filter((c) => key === undefined || c.idempotencyKey === key) };
  });

  const withCharge = (chargeId: string, fn: (c: Charge) => { status: number; body: unknown }) => () => {
    const charge = state.charges.get(chargeId);
    if (!charge)
      return { status: 404, body: { error: { type: 'invalid_request_error', message: 'No such charge' } } };
    return fn(charge);
  };
  app.post<{ Params: { id: string }; Body: { amount?: number } }>('/v1/charges/:id/capture', (req, reply) =>
    idempotent(
      req,
      reply,
      withCharge(req.params.id, (c) => {
        if (c.captured) return { status: 200, body: c };
        if (c.status !== 'requires_capture')
          return {
            status: 400,
            body: { error: { type: 'invalid_request_error', message: `Charge is ${c.status}` } },
          };
        c.status = 'succeeded';
        c.captured = true;
        c.capturedAt = Date.now();
        c.fee = simulatorFee(c.amount);
        emit('charge.succeeded', c);
        return { status: 200, body: c };
      }),
    ),
  );
  app.post<{ Params: { id: string } }>('/v1/charges/:id/void', (req, reply) =>
    idempotent(
      req,
      reply,
      withCharge(req.params.id, (c) => {
        if (c.status === 'canceled') return { status: 200, body: c };
        if (c.status !== 'requires_capture')
          return {
            status: 400,
            body: { error: { type: 'invalid_request_error', message: `Charge is ${c.status}` } },
          };
        c.status = 'canceled';
        emit('charge.voided', c);
        return { status: 200, body: c };
      }),
    ),
  );
  app.post<{ Body: { charge: string; amount?: number } }>('/v1/refunds', (req, reply) =>
    idempotent(
      req,
      reply,
      withCharge(req.body?.charge ?? '', (c) => {
        const amount = req.body.amount ?? c.amount - c.amountRefunded;
        if (!c.captured)
          return {
            status: 400,
            body: { error: { type: 'invalid_request_error', message: 'Charge is not captured' } },
          };
        if (!Number.isSafeInteger(amount) || amount <= 0 || amount > c.amount - c.amountRefunded) {
          return {
            status: 400,
            body: {
              error: {
                type: 'invalid_request_error',
                message: 'Refund amount exceeds what is left to refund',
              },
            },
          };
        }
        const key = req.headers['idempotency-key'];
        const refund = {
          id: id('re'),
          amount,
          created: Math.floor(Date.now() / 1000),
          idempotencyKey: typeof key === 'string' ? key : null,
        };
        c.refunds.push(refund);
        c.amountRefunded += amount;
        emit('charge.refunded', c);
        return { status: 200, body: { id: refund.id, charge: c.id, amount, status: 'succeeded' } };
      }),
    ),
  );

  /** CSV for reconciliation: captured charges, their fees and payout dates (two days later). */
  app.get('/v1/reports/settlement.csv', async (_req, reply) => {
    const lines = ['payment_id,charge_id,amount,fee,net,currency,payout_date'];
    for (const c of state.charges.values()) {
      if (!c.captured || c.capturedAt === null) continue;
      const payout = new Date(c.capturedAt + 2 * 86_400_000).toISOString().slice(0, 10);
      lines.push(
        [c.metadata.payment ?? '', c.id, c.amount, c.fee, c.amount - c.fee, c.currency, payout].join(','),
      );
    }
    return reply.type('text/csv').send(`${lines.join('\n')}\n`);
  });

  // ---- admin: faults, disputes, webhooks, state --------------------------------------------
  app.post<{ Body: Partial<Faults> }>('/admin/faults', async (req) => {
    state.faults = { ...state.faults, ...(req.body ?? {}) };
    return state.faults;
  });
  /** Lets the parked requests through (in arrival order) and stops holding new ones. */
  app.post('/admin/release', async () => {
    state.faults.hold = false;
    const released = state.held.splice(0);
    for (const resolve of released) resolve();
    return { released: released.length };
  });
  app.post<{ Body: { url?: string; duplicate?: boolean; reorder?: boolean } }>(
    '/admin/webhooks',
    async (req) => {
      state.webhook = { ...state.webhook, ...(req.body ?? {}) };
      return state.webhook;
    },
  );
  app.post<{ Params: { id: string }; Body: { outcome?: 'won' | 'lost' } }>(
    '/admin/charges/:id/dispute',
    async (req, reply) => {
      const c = state.charges.get(req.params.id);
      if (!c?.captured) return reply.code(404).send({ error: 'no captured charge' });
      if (!c.dispute) {
        c.dispute = {
          id: id('dp'),
          status: 'needs_response',
          amount: c.amount - c.amountRefunded,
          fee: DISPUTE_FEE,
        };
        emit('charge.dispute.created', c);
      }
      const outcome = req.body?.outcome;
      if (outcome && c.dispute.status === 'needs_response') {
        c.dispute.status = outcome;
        emit(`charge.dispute.${outcome === 'won' ? 'won' : 'lost'}`, c);
      }
      return c;
    },
  );
  app.get('/admin/state', async () => ({
    requests: state.requests,
    charges: [...state.charges.values()],
    capturedByKey: Object.fromEntries(
      [...state.charges.values()].filter((c) => c.captured).map((c) => [c.idempotencyKey, c.id]),
    ),
    deliveries: state.deliveries,
  }));
  app.post('/admin/webhooks/flush', async () => {
    await Promise.all([...pending]);
    return { pending: pending.size };
  });

  return { app, state };
}
