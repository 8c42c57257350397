import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import type { PaymentProvider } from './port.js';
import { ProviderRouter, type RouteRule } from './router.js';
import { SimulatorProvider } from './simulator/client.js';
import { buildSimulator, type SimulatorState } from './simulator/server.js';

export interface Providers {
  router: ProviderRouter;
  /** In-process simulators (absent when external ones are configured). */
  embedded: Array<{ id: string; app: FastifyInstance; state: SimulatorState; url: string }>;
  /** Tells in-process simulators where to send webhooks once Reprise listens. */
  setWebhookBase(baseUrl: string): void;
  close(): Promise<void>;
}

/**
 * The payment providers of this node: external simulators (`REPRISE_SIMULATORS=id=url,…`) or,
 * by default, two simulators started in-process on ephemeral loopback ports, so routing and
 * failover work out of the box.
 */
export async function setupProviders(config: Config): Promise<Providers> {
  const embedded: Providers['embedded'] = [];
  let endpoints: Array<{ id: string; url: string }>;
  if (config.simulators) {
    endpoints = config.simulators.split(',').map((pair) => {
      const [id, url] = pair.split('=', 2);
      if (!id || !url) throw new Error(`REPRISE_SIMULATORS: '${pair}' is not id=url`);
      return { id: id.trim(), url: url.trim().replace(/\/$/, '') };
    });
  } else {
    endpoints = [];
    for (const id of ['simulator-a', 'simulator-b']) {
      const { app, state } = await buildSimulator({
        apiKey: config.simulatorApiKey,
        webhookSecret: config.simulatorWebhookSecret,
      });
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      embedded.push({ id, app, state, url });
      endpoints.push({ id, url });
    }
  }
  const providers: PaymentProvider[] = endpoints.map(
    (e) =>
      new SimulatorProvider({
        id: e.id,
        baseUrl: e.url,
        apiKey: config.simulatorApiKey,
        webhookSecret: config.simulatorWebhookSecret,
        timeoutMs: config.providerTimeoutMs,
      }),
  );
  const rules: RouteRule[] = config.paymentRoutes
    ? (JSON.parse(config.paymentRoutes) as RouteRule[])
    : [{ market: '*', brand: '*', providers: providers.map((p) => p.id) }];
  for (const rule of rules) {
    for (const id of rule.providers) {
      if (!providers.some((p) => p.id === id))
        throw new Error(`REPRISE_PAYMENT_ROUTES names unknown provider '${id}'`);
    }
  }
  return {
    router: new ProviderRouter(providers, rules, {
      failuresToOpen: 3,
      halfOpenAfterMs: config.breakerHalfOpenMs,
    }),
    embedded,
    setWebhookBase(baseUrl) {
      for (const e of embedded) e.state.webhook.url = `${baseUrl}/v1/providers/${e.id}/webhooks`;
    },
    async close() {
      await Promise.all(embedded.map((e) => e.app.close()));
    },
  };
}
