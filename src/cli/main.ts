#!/usr/bin/env node
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type App, createApp } from '../app.js';
import { ConfigError, loadConfig, requireSimulatorSecrets, simulatorSecretsFrom } from '../config.js';
import { KeyStore } from '../crypto/key-store.js';
import { loadMasterKey } from '../crypto/master-key.js';
import { openDatabase } from '../db/engine.js';
import { migrate } from '../db/migrate.js';
import { isScope, SCOPES, type Scope } from '../modules/api-keys/scopes.js';
import { moveDataKeysToKeyStore } from '../modules/customers/key-move.js';
import { originOf } from '../providers/simulator/elements.js';
import { buildSimulator } from '../providers/simulator/server.js';
import { seedDemoCatalog } from '../seed/demo-catalog.js';
import { seedDemoSubscriptions } from '../seed/demo-subscriptions.js';

const USAGE = `reprise — commerce platform for subscription products

Usage:
  reprise serve                      run the API (PORT, HOST, DATABASE_URL, REPRISE_DATA_DIR, REPRISE_SEED)
  reprise migrate                    apply pending database migrations
  reprise seed --demo                create the demo catalog (markets, products, plans)
  reprise keys create --name N --scopes a,b   create an API key and print its secret once
  reprise psp-simulator --port N [--webhook-url U] [--page-origin O]
                                     run the PSP simulator on its own; O: the origin(s) of Reprise's
                                     hosted pages, comma-separated, that may embed its card frame

Scopes: ${SCOPES.join(', ')}
`;

const DEV_KEY_FILE = 'dev-api-key';

async function serve(): Promise<void> {
  const config = loadConfig();
  const app = await createApp({
    config,
    background: true,
    logger: { level: config.logLevel, base: { service: 'reprise' } },
  });
  const seeded = config.seed === 'demo' ? await seedDemoCatalog(app.services) : undefined;
  const devKey = config.databaseUrl ? undefined : await ensureDevKey(app, config.dataDir);
  await app.server.listen({ port: config.port, host: config.host });
  const address = app.server.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const base = `http://${config.host}:${port}`;
  app.services.providers.setWebhookBase(base);
  app.services.publicOrigin.listening(config.host, port);
  // Demo listeners check out through the running simulators, after the catalog is there.
  const listeners = seeded ? await seedDemoSubscriptions(app.services) : undefined;
  const lines = [
    '',
    `  Reprise is running (${app.database.kind === 'pglite' ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL'})`,
    `  API             ${base}/v1`,
    `  API reference   ${base}/docs   (OpenAPI: ${base}/openapi.json)`,
    `  Health          ${base}/health   Metrics: ${base}/metrics`,
    `  Admin console   ${base}/admin   (sign in with an API key)`,
    `  Hosted pages    checkout: POST /v1/checkout-sessions → url; portal: POST /v1/portal-sessions → url`,
    `  Key store       ${app.keyStore.kind === 'pglite' ? `embedded PGlite in ${config.dataDir}/keystore` : 'PostgreSQL (REPRISE_KEYSTORE_URL)'}; master key from ${app.masterKeySource}`,
    `  Payments        ${app.services.providers.embedded.length > 0 ? `PSP simulators in-process: ${app.services.providers.embedded.map((e) => `${e.id} ${e.url}`).join(', ')}` : `providers: ${config.simulators}`}`,
    devKey ? `  Dev API key     ${devKey.secret}   (admin; saved in ${devKey.path})` : '',
    config.bootstrapKey ? '  Bootstrap key   REPRISE_BOOTSTRAP_KEY is accepted with every scope' : '',
    seeded && !seeded.skipped
      ? `  Demo catalog    seeded: ${seeded.markets} markets, ${seeded.products} products, ${seeded.plans} plans`
      : '',
    listeners && !listeners.skipped
      ? `  Demo listeners  ${listeners.subscriptions} subscriptions (GET /v1/subscriptions, /v1/entitlements/demo-listener-us)`
      : '',
    '',
    `  Try: curl -H "Authorization: Bearer ${devKey ? devKey.secret : '<key>'}" ${base}/v1/plans`,
    '',
  ].filter((l) => l !== '');
  process.stdout.write(`${lines.join('\n')}\n\n`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.server.log.info({ signal }, 'shutting down: draining requests');
    const force = setTimeout(() => process.exit(1), 25_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** The embedded default's development key: created once, kept in the data directory. */
async function ensureDevKey(app: App, dataDir: string): Promise<{ secret: string; path: string }> {
  const path = join(dataDir, DEV_KEY_FILE);
  if (existsSync(path)) {
    const secret = readFileSync(path, 'utf8').trim();
    if (await app.services.apiKeys.authenticate(secret)) return { secret, path };
  }
  const { secret } = await app.services.apiKeys.create({
    name: 'development (npm start)',
    scopes: ['admin'],
  });
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return { secret, path };
}

async function withServices<T>(fn: (app: App) => Promise<T>): Promise<T> {
  const app = await createApp({ config: loadConfig() });
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      await serve();
      return -1;
    case 'migrate': {
      const config = loadConfig();
      const handle = await openDatabase({
        databaseUrl: config.databaseUrl,
        dataDir: `${config.dataDir}/pgdata`,
      });
      const keyStore = await KeyStore.open({
        url: config.keystoreUrl,
        dataDir: `${config.dataDir}/keystore`,
      });
      try {
        // As at every start: keys move to the key store before the migration that drops them.
        const { key } = loadMasterKey(config.masterKey, config.dataDir);
        const moved = await moveDataKeysToKeyStore(handle.db, keyStore, key.id);
        if (moved > 0) process.stdout.write(`Moved ${moved} data keys to the key store.\n`);
        const result = await migrate(handle.db);
        process.stdout.write(
          result.applied.length === 0
            ? `Up to date (${result.alreadyApplied} migrations).\n`
            : `Applied ${result.applied.length}: ${result.applied.join(', ')}\n`,
        );
      } finally {
        await handle.close();
        await keyStore.close();
      }
      return 0;
    }
    case 'seed': {
      const { values } = parseArgs({ args: rest, options: { demo: { type: 'boolean', default: false } } });
      if (!values.demo) {
        process.stderr.write('Nothing to seed: pass --demo for the demo catalog.\n');
        return 2;
      }
      const result = await withServices((app) => seedDemoCatalog(app.services, { force: true }));
      process.stdout.write(
        `Demo catalog: ${result.markets} markets, ${result.products} products, ${result.plans} plans created.\n`,
      );
      return 0;
    }
    case 'keys': {
      const [sub, ...args] = rest;
      const { values } = parseArgs({
        args,
        options: { name: { type: 'string' }, scopes: { type: 'string' } },
      });
      if (sub !== 'create' || !values.name || !values.scopes) {
        process.stderr.write('Usage: reprise keys create --name N --scopes a,b\n');
        return 2;
      }
      const scopes = values.scopes.split(',').map((s) => s.trim());
      const bad = scopes.filter((s) => !isScope(s));
      if (bad.length > 0) {
        process.stderr.write(`Unknown scopes: ${bad.join(', ')}. Known: ${SCOPES.join(', ')}\n`);
        return 2;
      }
      const name = values.name;
      const { key, secret } = await withServices((app) =>
        app.services.apiKeys.create({ name, scopes: scopes as Scope[] }),
      );
      process.stdout.write(`${key.id}\n${secret}\n`);
      return 0;
    }
    case 'psp-simulator': {
      const { values } = parseArgs({
        args: rest,
        options: {
          port: { type: 'string', default: '4010' },
          'webhook-url': { type: 'string' },
          host: { type: 'string', default: '127.0.0.1' },
          'page-origin': { type: 'string' },
        },
      });
      const pageOrigins = (values['page-origin'] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      for (const origin of pageOrigins) {
        if (originOf(origin) === null)
          throw new ConfigError(`--page-origin: '${origin}' is not an origin (scheme://host[:port])`);
      }
      const secrets = requireSimulatorSecrets(simulatorSecretsFrom(process.env), 'reprise psp-simulator');
      const { app } = await buildSimulator({
        ...secrets,
        ...(values['webhook-url'] ? { webhookUrl: values['webhook-url'] } : {}),
        pageOrigins,
      });
      const url = await app.listen({ port: Number(values.port), host: values.host });
      process.stdout.write(
        `PSP simulator listening on ${url} (API key from REPRISE_SIMULATOR_API_KEY, admin endpoints included)\n`,
      );
      const stop = () => app.close().then(() => process.exit(0));
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      return -1;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`Unknown command '${command}'.\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(
      error instanceof ConfigError
        ? `reprise: ${error.message}\n`
        : `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
