import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { transact } from '../../src/db/transaction.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * The renewal batch writes each of its tables in one multi-row statement whose bind parameters
 * grow with the batch (rows × columns; the protocol allows 65,535). The largest batch the
 * configuration accepts must fit: at 5,000 (the old bound) the payments insert alone needed
 * 125,000 parameters and every batch above about 2,400 failed, renewing nothing, until its
 * cycle jobs gave up.
 */
describe(`attack: the largest configured renewal batch fits in one statement (${ENGINE})`, () => {
  let t: TestApp;
  const max = (() => {
    let hi = 1;
    // The bound the configuration enforces, found from its own check.
    for (const n of [10_000, 5_000, 2_500, 2_000, 1_000, 500]) {
      try {
        loadConfig({ REPRISE_DATA_DIR: '/tmp/reprise-test-unused', REPRISE_RENEWAL_BATCH: String(n) });
        hi = n;
        break;
      } catch {
        // over the bound
      }
    }
    return hi;
  })();

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  it('refuses a batch over the bound', () => {
    expect(() =>
      loadConfig({ REPRISE_DATA_DIR: '/tmp/reprise-test-unused', REPRISE_RENEWAL_BATCH: String(max + 1) }),
    ).toThrow(/REPRISE_RENEWAL_BATCH/);
  });

  it('starts a whole batch of payments in one transaction at the configured maximum', async () => {
    const id = (await t.call('POST', '/v1/customers', { externalId: 'batch-max', market: 'SE' })).json()
      .id as string;
    const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    expect(pm.statusCode, pm.body).toBe(201);
    const { payments, db } = t.app.services;
    const started = await transact(db, (trx) =>
      payments.startMany(
        trx,
        Array.from({ length: max }, (_, i) => ({
          input: {
            customer: id,
            amount: 10_900,
            taxMinor: 2_180,
            currency: 'SEK',
            description: `Renewal ${i}`,
          },
          marketCode: 'SE',
          requestKey: `batch-max-${i}`,
        })),
      ),
    );
    expect(started.size).toBe(max);
  }, 120_000);
});
