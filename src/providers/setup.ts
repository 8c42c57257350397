import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { type Config, ConfigError, requireSimulatorSecrets } from '../config.js';
import { type Clock, systemClock } from '../kernel/clock.js';
import type { PaymentProvider } from './port.js';
import { ProviderRouter, type RouteRule } from './router.js';
import { SimulatorProvider } from './simulator/client.js';
import { buildSimulator, type SimulatorState } from './simulator/server.js';

export interface Providers {
  router: ProviderRouter;
  /** In-process simulators (absent when external ones are configured). */
  embedded: Array<{
    id: string;
    app: FastifyInstance;
    state: SimulatorState;
    url: string;
    /** Generated at start, never configured: only this process can call or sign as this simulator. */
    apiKey: string;
    webhookSecret: string;
  }>;
  /** Tells in-process simulators where to send webhooks once Reprise listens. */
  setWebhookBase(baseUrl: string): void;
  /**
   * Tells in-process simulators the origin of Reprise's hosted pages: the only parent their card
   * frame may be embedded in (CSP frame-ancestors). A function is read at each frame request (the
   * default origin is known once the server listens). An external simulator is told with
   * `reprise psp-simulator --page-origin`.
   */
  setPageOrigin(origin: string | (() => string)): void;
  close(): Promise<void>;
}

/**
 * The payment providers of this node: external simulators (`REPRISE_SIMULATORS=id=url,…`) or,
 * by default, two simulators started in-process on ephemeral loopback ports, so routing and
 * failover work out of the box.
 */
export async function setupProviders(config: Config, clock: Clock = systemClock): Promise<Providers> {
  const embedded: Providers['embedded'] = [];
  let endpoints: Array<{ id: string; url: string; apiKey: string; webhookSecret: string }>;
  if (config.simulators) {
    const secrets = requireSimulatorSecrets(config, 'REPRISE_SIMULATORS');
    endpoints = config.simulators.split(',').map((pair) => {
      const [id, url] = pair.split('=', 2);
      if (!id || !url) throw new ConfigError(`REPRISE_SIMULATORS: '${pair}' is not id=url`);
      return { id: id.trim(), url: url.trim().replace(/\/$/, ''), ...secrets };
    });
  } else {
    endpoints = [];
    for (const id of ['simulator-a', 'simulator-b']) {
      const secrets = {
        apiKey: `sk_sim_${randomBytes(24).toString('hex')}`,
        webhookSecret: `whsec_${randomBytes(24).toString('hex')}`,
      };
      const { app, state } = await buildSimulator(secrets);
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      embedded.push({ id, app, state, url, ...secrets });
      endpoints.push({ id, url, ...secrets });
    }
  }
  const providers: PaymentProvider[] = endpoints.map(
    (e) =>
      new SimulatorProvider({
        id: e.id,
        baseUrl: e.url,
        apiKey: e.apiKey,
        webhookSecret: e.webhookSecret,
        timeoutMs: config.providerTimeoutMs,
        // Signatures are checked against the wall clock both ends share, never a test clock.
        clock: systemClock,
      }),
  );
  const rules: RouteRule[] = config.paymentRoutes
    ? (JSON.parse(config.paymentRoutes) as RouteRule[])
    : [{ market: '*', brand: '*', providers: providers.map((p) => p.id) }];
  for (const rule of rules) {
    for (const id of rule.providers) {
      if (!providers.some((p) => p.id === id))
        throw new ConfigError(`REPRISE_PAYMENT_ROUTES names unknown provider '${id}'`);
    }
  }
  return {
    router: new ProviderRouter(
      providers,
      rules,
      {
        failuresToOpen: 3,
        halfOpenAfterMs: config.breakerHalfOpenMs,
      },
      clock,
    ),
    embedded,
    setWebhookBase(baseUrl) {
      for (const e of embedded) e.state.webhook.url = `${baseUrl}/v1/providers/${e.id}/webhooks`;
    },
    setPageOrigin(origin) {
      for (const e of embedded) e.state.pageOriginSource = typeof origin === 'string' ? () => origin : origin;
    },
    async close() {
      await Promise.all(embedded.map((e) => e.app.close()));
    },
  };
}
