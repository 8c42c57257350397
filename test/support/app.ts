import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { type App, createApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { KeyStore } from '../../src/crypto/key-store.js';
import type { Clock } from '../../src/kernel/clock.js';
import { freshDatabase, freshKeyStore } from './database.js';

export const BOOTSTRAP = 'test-bootstrap-key-with-every-scope';
export const MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

/** Markets the tests use, as the demo catalog defines them. */
export const MARKETS = {
  SE: { code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true },
  DE: { code: 'DE', currency: 'EUR', taxRateBps: 1900, taxInclusive: true },
  FR: { code: 'FR', currency: 'EUR', taxRateBps: 2000, taxInclusive: true },
  JP: { code: 'JP', currency: 'JPY', taxRateBps: 1000, taxInclusive: true },
  US: { code: 'US', currency: 'USD', taxRateBps: 0, taxInclusive: false },
} as const;

export interface TestApp {
  app: App;
  config: Config;
  /** Calls the API as `key` (the bootstrap admin key by default). */
  call(
    method: InjectOptions['method'],
    url: string,
    body?: unknown,
    opts?: { key?: string | null; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
  /** Creates these markets (see MARKETS); throws unless each is created. */
  markets(...codes: Array<keyof typeof MARKETS>): Promise<void>;
  /** Creates an API key with these scopes and returns its secret. */
  keyWith(...scopes: string[]): Promise<string>;
  close(): Promise<void>;
}

export async function startTestApp(
  overrides: Partial<Config> = {},
  clock?: Clock,
  options: { keyStore?: KeyStore } = {},
): Promise<TestApp> {
  const database = await freshDatabase();
  // Every test app has a key store of its own, apart from its data database, as in production.
  const keyStore = options.keyStore ?? (await freshKeyStore());
  const config: Config = {
    ...loadConfig({ REPRISE_DATA_DIR: '/tmp/reprise-test-unused' }),
    bootstrapKey: BOOTSTRAP,
    masterKey: MASTER_KEY,
    seed: 'none',
    ...overrides,
  };
  const app = await createApp({ config, database, keyStore, ...(clock ? { clock } : {}) });
  const call: TestApp['call'] = (method, url, body, opts = {}) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const key = opts.key === undefined ? BOOTSTRAP : opts.key;
    if (key !== null) headers.authorization = `Bearer ${key}`;
    return app.server.inject({
      method,
      url,
      headers,
      ...(body === undefined ? {} : { payload: body as object }),
    });
  };
  return {
    app,
    config,
    call,
    async markets(...codes) {
      for (const code of codes) {
        const res = await call('POST', '/v1/markets', MARKETS[code]);
        if (res.statusCode !== 201) throw new Error(`could not create market ${code}: ${res.body}`);
      }
    },
    async keyWith(...scopes) {
      const res = await call('POST', '/v1/api-keys', { name: `test ${scopes.join(' ')}`, scopes });
      if (res.statusCode !== 201) throw new Error(`could not create key: ${res.body}`);
      return res.json().secret as string;
    },
    async close() {
      await app.close();
      await database.close();
      await keyStore.close();
    },
  };
}
