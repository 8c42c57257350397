import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type App, createApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { KeyStore } from '../../src/crypto/key-store.js';
import { openDatabase } from '../../src/db/engine.js';
import { BOOTSTRAP, MASTER_KEY, startTestApp, type TestApp } from '../support/app.js';
import { payingCustomer, smallCatalog, subscribeOk } from '../support/billing.js';

/**
 * Two platform instances in one process on one PostgreSQL database and one NATS server (the
 * machine's): each has its own entitlement projection, fed through the relay and JetStream. The
 * two-process test with kills and a NATS outage is test/nats/two-nodes.test.ts.
 */
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

describe('two instances, one PostgreSQL, one NATS: entitlements follow changes made on the other', () => {
  let a: TestApp;
  let b: App;
  const prefix = `t${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    a = await startTestApp({ natsUrl: NATS_URL, natsPrefix: prefix, providerTimeoutMs: 2_000 });
    const url = (a.app.database as unknown as { url?: string }).url;
    expect(url, 'the test app exposes its database URL').toBeTruthy();
    const config: Config = {
      ...loadConfig({ REPRISE_DATA_DIR: '/tmp/reprise-test-unused' }),
      bootstrapKey: BOOTSTRAP,
      masterKey: MASTER_KEY,
      seed: 'none',
      databaseUrl: url,
      natsUrl: NATS_URL,
      natsPrefix: prefix,
    };
    b = await createApp({
      config,
      database: await openDatabase({ databaseUrl: url!, poolMax: 5 }),
      keyStore: a.app.keyStore as KeyStore,
      background: true,
    });
    a.app.services.relay.start();
    await smallCatalog(a);
  });
  afterAll(async () => {
    await b?.close();
    await b?.database.close();
    await a?.close();
    const nc = await connect({ servers: NATS_URL });
    const jsm = await jetstreamManager(nc);
    for await (const info of jsm.streams.list()) {
      if (info.config.name.startsWith(`${prefix.toUpperCase()}_`)) await jsm.streams.delete(info.config.name);
    }
    await nc.close();
  });

  const onB = async (externalId: string) => {
    const res = await b.server.inject({
      method: 'GET',
      url: `/v1/entitlements/${externalId}`,
      headers: { authorization: `Bearer ${BOOTSTRAP}` },
    });
    expect(res.statusCode).toBe(200);
    return res.json() as { active: boolean; features: string[] };
  };

  it('a subscription created through A is entitled on B, which held the user as inactive; a cancel likewise', async () => {
    const c = await payingCustomer(a, `two-apps-${prefix}`);
    expect((await onB(c.externalId)).active).toBe(false); // B now holds it, inactive
    const hitsBefore = b.services.entitlementProjection.hits;
    const sub = await subscribeOk(a, c.id, 'music-monthly');
    const started = Date.now();
    await vi.waitFor(async () => expect((await onB(c.externalId)).active).toBe(true), {
      timeout: 10_000,
      interval: 20,
    });
    const lagMs = Date.now() - started;
    // Seen through the event, not a reload: B answered from memory.
    expect(b.services.entitlementProjection.hits).toBeGreaterThan(hitsBefore);
    expect(lagMs).toBeLessThan(10_000);
    const cancel = await a.call('POST', `/v1/subscriptions/${sub.id}/cancel`, { timing: 'immediate' });
    expect(cancel.statusCode, cancel.body).toBe(200);
    await vi.waitFor(async () => expect((await onB(c.externalId)).active).toBe(false), {
      timeout: 10_000,
      interval: 20,
    });
  });
});
