import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { amountMinorMax } from '../../src/kernel/money.js';
import type { Posting } from '../../src/modules/ledger/domain/transaction.js';
import { LedgerService } from '../../src/modules/ledger/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const acct = (owner: string, currency = 'SEK') => ({ type: 'transfer_test' as const, owner, currency });
const transfer = (from: string, to: string, amount: number, currency = 'SEK'): Posting[] => [
  { account: acct(to, currency), debit: amount },
  { account: acct(from, currency), credit: amount },
];

describe(`ledger (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());
  const ledger = () => t.app.services.ledger;
  const db = () => t.app.services.db;

  it('posts a balanced transaction and keeps running balances', async () => {
    const sale: Posting[] = [
      { account: { type: 'provider_clearing', owner: 'sim-a', currency: 'SEK' }, debit: 13900 },
      { account: { type: 'revenue', currency: 'SEK' }, credit: 11120 },
      { account: { type: 'tax_payable', currency: 'SEK' }, credit: 2780 },
    ];
    const result = await transact(db(), (trx) =>
      ledger().post(trx, { idempotencyKey: 'sale-1', postings: sale, reference: 'pay_1' }),
    );
    expect(result).toMatchObject({ replayed: false });
    expect(result.id).toMatch(/^txn_/);
    expect((await ledger().balance({ type: 'revenue', currency: 'SEK' }))?.balanceMinor).toBe(11120n);
    expect(
      (await ledger().balance({ type: 'provider_clearing', owner: 'sim-a', currency: 'SEK' }))?.balanceMinor,
    ).toBe(13900n);
    const listed = await t.call('GET', '/v1/ledger/transactions?reference=pay_1');
    expect(listed.json().data).toEqual([
      expect.objectContaining({
        id: result.id,
        reference: 'pay_1',
        postings: [
          { account: 'provider_clearing:sim-a:SEK', currency: 'SEK', debit: 13900, credit: 0 },
          { account: 'revenue:-:SEK', currency: 'SEK', debit: 0, credit: 11120 },
          { account: 'tax_payable:-:SEK', currency: 'SEK', debit: 0, credit: 2780 },
        ],
      }),
    ]);
    const accounts = (await t.call('GET', '/v1/ledger/accounts?type=revenue')).json().data;
    expect(accounts).toEqual([
      expect.objectContaining({
        code: 'revenue:-:SEK',
        normalSide: 'credit',
        credits: 11120,
        balance: 11120,
      }),
    ]);
  });

  it('same key and same postings answer the original; same key, other postings is refused', async () => {
    const first = await transact(db(), (trx) =>
      ledger().post(trx, { idempotencyKey: 'idem-1', postings: transfer('a', 'b', 500) }),
    );
    const again = await transact(db(), (trx) =>
      ledger().post(trx, { idempotencyKey: 'idem-1', postings: transfer('a', 'b', 500).reverse() }),
    );
    expect(again).toEqual({ id: first.id, replayed: true });
    await expect(
      transact(db(), (trx) =>
        ledger().post(trx, { idempotencyKey: 'idem-1', postings: transfer('a', 'b', 501) }),
      ),
    ).rejects.toMatchObject({ code: 'ledger_conflict' });
    expect((await ledger().balance(acct('b')))?.balanceMinor).toBe(500n);
  });

  it('refuses an unbalanced transaction in code, before any SQL', async () => {
    await expect(
      transact(db(), (trx) =>
        ledger().post(trx, {
          idempotencyKey: 'bad-1',
          postings: [
            { account: acct('a'), debit: 100 },
            { account: acct('b'), credit: 90 },
          ],
        }),
      ),
    ).rejects.toMatchObject({
      code: 'validation_failed',
      errors: [{ path: 'postings', message: 'debits and credits differ by 10 in SEK' }],
    });
  });

  it('the database refuses an unbalanced, one-legged or extended transaction, whatever the code does', async () => {
    // NOK is used by this test only: the raw rows below bypass the running balances on purpose.
    await transact(db(), (trx) =>
      ledger().post(trx, { idempotencyKey: 'raw-setup', postings: transfer('raw-1', 'raw-2', 1, 'NOK') }),
    );
    const accountId = (await ledger().balance(acct('raw-1', 'NOK')))!.id;
    // One statement, as the service does it: the transaction row and its postings together.
    const insertRaw = (id: string, amounts: number[], account: string = accountId) => {
      const values = amounts.map((amount, seq) => sql`(${id}, ${seq}, ${account}, 'NOK', ${amount})`);
      return sql`WITH t AS (
          INSERT INTO ledger_transactions (id, idempotency_key, postings_hash, effective_at, created_at)
          VALUES (${id}, ${id}, 'x', now(), now()) RETURNING id)
        ${amounts.length > 0 ? sql`, p AS (INSERT INTO ledger_postings (transaction_id, seq, account_id, currency, amount_minor) VALUES ${sql.join(values)})` : sql``}
        SELECT id FROM t`.execute(db());
    };
    const insertRawWith = (id: string, account: string) => insertRaw(id, [100, -100], account);
    await expect(insertRaw('txn_raw_unbalanced', [100, -99])).rejects.toThrow(
      /does not balance in NOK: debits - credits = 1/,
    );
    await expect(insertRaw('txn_raw_one_leg', [100])).rejects.toThrow(/ledger_transactions_second_posting/);
    await expect(insertRaw('txn_raw_empty', [])).rejects.toThrow(/ledger_transactions_first_posting/);
    // A stored transaction cannot be extended later, not even by a balanced pair.
    await insertRaw('txn_raw_ok', [100, -100]);
    const addLater = (rows: number[]) =>
      sql`INSERT INTO ledger_postings (transaction_id, seq, account_id, currency, amount_minor) VALUES ${sql.join(
        rows.map((amount, i) => sql`('txn_raw_ok', ${2 + i}, ${accountId}, 'NOK', ${amount})`),
      )}`.execute(db());
    await expect(addLater([5])).rejects.toThrow(/already stored/);
    await expect(addLater([5, -5])).rejects.toThrow(/already stored/);
    // Nor a transaction row whose postings would come in a later statement.
    await expect(
      transact(db(), async (trx) => {
        await sql`INSERT INTO ledger_transactions (id, idempotency_key, postings_hash, effective_at, created_at) VALUES ('txn_raw_two', 'txn_raw_two', 'x', now(), now())`.execute(
          trx,
        );
      }),
    ).rejects.toThrow(/ledger_transactions_first_posting/);
    // The stored raw transaction bypassed the running balances: the verified trial balance sees it.
    const verified = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json();
    expect(verified.currencies.find((c: { currency: string }) => c.currency === 'NOK')).toMatchObject({
      balanced: false,
    });
    // A posting in another currency than its account's is refused by a foreign key.
    await expect(
      sql`WITH t AS (INSERT INTO ledger_transactions (id, idempotency_key, postings_hash, effective_at, created_at)
            VALUES ('txn_raw_ccy', 'txn_raw_ccy', 'x', now(), now()) RETURNING id),
          p AS (INSERT INTO ledger_postings VALUES ('txn_raw_ccy', 0, ${accountId}, 'SEK', 100), ('txn_raw_ccy', 1, ${accountId}, 'SEK', -100))
          SELECT id FROM t`.execute(db()),
    ).rejects.toThrow(/names no SEK account/);
    // Nor a posting of a transaction that does not exist, or of an unknown account.
    await expect(
      sql`INSERT INTO ledger_postings VALUES ('txn_nowhere', 0, ${accountId}, 'NOK', 5), ('txn_nowhere', 1, ${accountId}, 'NOK', -5)`.execute(
        db(),
      ),
    ).rejects.toThrow(/unknown ledger transaction txn_nowhere/);
    await expect(insertRawWith('txn_raw_acc', 'acc_missing')).rejects.toThrow(
      /names no NOK account acc_missing/,
    );
    // Accounts are as immutable as the postings that name them.
    await expect(sql`DELETE FROM ledger_accounts WHERE id = ${accountId}`.execute(db())).rejects.toThrow(
      /append-only/,
    );
  });

  it('is immutable: updates, deletes and truncation are refused; corrections are reversals', async () => {
    const posted = await transact(db(), (trx) =>
      ledger().post(trx, {
        idempotencyKey: 'to-reverse',
        postings: transfer('c', 'd', 700),
        reference: 'ref-rev',
      }),
    );
    await expect(
      sql`UPDATE ledger_postings SET amount_minor = 1 WHERE transaction_id = ${posted.id}`.execute(db()),
    ).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM ledger_transactions WHERE id = ${posted.id}`.execute(db())).rejects.toThrow(
      /append-only/,
    );
    await expect(sql`TRUNCATE ledger_postings, ledger_transactions`.execute(db())).rejects.toThrow(
      /append-only/,
    );
    const reversal = await transact(db(), (trx) => ledger().reverse(trx, posted.id, 'reverse:to-reverse'));
    const again = await transact(db(), (trx) => ledger().reverse(trx, posted.id, 'reverse:to-reverse'));
    expect(again).toEqual({ id: reversal.id, replayed: true });
    expect((await ledger().balance(acct('d')))?.balanceMinor).toBe(0n);
    const txns = (await t.call('GET', '/v1/ledger/transactions?reference=ref-rev')).json().data;
    expect(txns.map((x: { reverses: string | null }) => x.reverses)).toEqual([null, posted.id]);
  });

  it('posts a batch in one database transaction, idempotently', async () => {
    const specs = Array.from({ length: 300 }, (_, i) => ({
      idempotencyKey: `batch-${i}`,
      postings: transfer(`batch-src`, `batch-dst-${i % 7}`, i + 1),
    }));
    const first = await transact(db(), (trx) => ledger().postBatch(trx, specs));
    expect(first.every((r) => !r.replayed)).toBe(true);
    const second = await transact(db(), (trx) => ledger().postBatch(trx, specs));
    expect(second.map((r) => r.id)).toEqual(first.map((r) => r.id));
    expect(second.every((r) => r.replayed)).toBe(true);
    expect((await ledger().balance(acct('batch-src')))?.balanceMinor).toBe(BigInt(-(300 * 301) / 2));
    // A batch with one bad transaction stores none of them.
    await expect(
      transact(db(), (trx) =>
        ledger().postBatch(trx, [
          { idempotencyKey: 'batch-x-1', postings: transfer('x', 'y', 1) },
          {
            idempotencyKey: 'batch-x-2',
            postings: [
              { account: acct('x'), debit: 1 },
              { account: acct('y'), credit: 2 },
            ],
          },
        ]),
      ),
    ).rejects.toMatchObject({ errors: [{ path: '[1].postings' }] });
    expect(await ledger().balance(acct('x'))).toBeUndefined();
  });

  it('bank invariant: under concurrent transfers every read of all balances sums to zero per currency', async () => {
    const accounts = Array.from({ length: 20 }, (_, i) => `bank-${i}`);
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const writers = Array.from({ length: 6 }, (_, w) =>
      (async () => {
        for (let i = 0; i < 25; i++) {
          const from = accounts[rand(accounts.length)]!;
          let to = accounts[rand(accounts.length)]!;
          if (to === from) to = accounts[(accounts.indexOf(from) + 1) % accounts.length]!;
          const currency = i % 3 === 0 ? 'EUR' : 'SEK';
          // Some transfers move two currencies in one transaction.
          const postings =
            i % 5 === 0
              ? [...transfer(from, to, 1 + rand(1000), 'SEK'), ...transfer(to, from, 1 + rand(1000), 'EUR')]
              : transfer(from, to, 1 + rand(1000), currency);
          await transact(db(), (trx) => ledger().post(trx, { idempotencyKey: `bank-${w}-${i}`, postings }));
        }
      })(),
    );
    let reads = 0;
    let running = true;
    const readers = Array.from({ length: 2 }, () =>
      (async () => {
        while (running && reads < 10_000) {
          const sums = await sql<{ currency: string; total: number }>`
            SELECT currency, sum(debits_minor - credits_minor)::bigint AS total FROM ledger_balance_slots GROUP BY currency`.execute(
            db(),
          );
          for (const row of sums.rows) expect(row.total, `sum of all ${row.currency} balances`).toBe(0);
          const trial = await ledger().trialBalance();
          for (const line of trial) expect(line.balanced).toBe(true);
          reads++;
        }
      })(),
    );
    await Promise.all(writers);
    running = false;
    await Promise.all(readers);
    expect(reads).toBeGreaterThan(0);
    const verified = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json();
    expect(verified.verified).toBe(true);
    const traded = verified.currencies.filter(
      (c: { currency: string }) => c.currency === 'SEK' || c.currency === 'EUR',
    );
    expect(traded).toHaveLength(2);
    expect(
      traded.every(
        (c: { balanced: boolean; debits: number; credits: number }) => c.balanced && c.debits === c.credits,
      ),
    ).toBe(true);
    // No lost update: each account's running balance equals the sum of its postings.
    const mismatches = await sql<{ id: string }>`
      SELECT a.id FROM ledger_accounts a
      LEFT JOIN (SELECT account_id, sum(debits_minor - credits_minor) AS b FROM ledger_balance_slots GROUP BY account_id) s ON s.account_id = a.id
      LEFT JOIN (SELECT account_id, sum(amount_minor) AS p FROM ledger_postings GROUP BY account_id) p ON p.account_id = a.id
      WHERE coalesce(s.b, 0) <> coalesce(p.p, 0) AND a.currency <> 'NOK'`.execute(db());
    expect(mismatches.rows).toEqual([]);
  });

  it('reads stay exact and 200 after the largest allowed postings, many times over, and their reversal', async () => {
    const max = amountMinorMax('IDR');
    const n = 10_000; // 10,000 × 999,999,999,999 > 2^53: the sums pass what a JS number holds exactly
    for (let from = 0; from < n; from += 5_000) {
      const specs = Array.from({ length: 5_000 }, (_, i) => ({
        idempotencyKey: `max-idr-${from + i}`,
        postings: transfer('max-src', 'max-dst', max, 'IDR'),
        reference: 'max-idr',
      }));
      await transact(db(), (trx) => ledger().postBatch(trx, specs));
    }
    const total = BigInt(max) * BigInt(n);
    expect(total > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
    const accounts = await t.call('GET', '/v1/ledger/accounts?currency=IDR&type=transfer_test');
    expect(accounts.statusCode).toBe(200);
    // Exact JSON integers: the text carries every digit (a JS number would round them).
    expect(accounts.body).toContain(`"debits":${total}`);
    expect(accounts.body).toContain(`"credits":${total}`);
    expect(accounts.body).toContain(`"balance":${total}`);
    expect(accounts.body).toContain(`"balance":-${total}`);
    const trial = await t.call('GET', '/v1/ledger/trial-balance');
    expect(trial.statusCode).toBe(200);
    expect(trial.body).toContain(`{"currency":"IDR","debits":${total},"credits":${total},"balanced":true}`);
    // A full reversal brings the balances back to 0; the sums keep growing and still read fine.
    const first = (await t.call('GET', '/v1/ledger/transactions?reference=max-idr&limit=1')).json().data[0];
    await transact(db(), (trx) => ledger().reverse(trx, first.id, 'max-idr-reversal'));
    const verified = await t.call('GET', '/v1/ledger/trial-balance?verify=true');
    expect(verified.statusCode).toBe(200);
    expect(verified.body).toContain(
      `{"currency":"IDR","debits":${total + BigInt(max)},"credits":${total + BigInt(max)},"balanced":true}`,
    );
    expect((await ledger().balance(acct('max-dst', 'IDR')))?.balanceMinor).toBe(total - BigInt(max));
    // Amounts in the safe range are still plain JSON numbers.
    expect(
      (await t.call('GET', '/v1/ledger/accounts?currency=SEK&type=revenue')).json().data[0].balance,
    ).toBe(11120);
  });

  it('verifying the trial balance (a full scan) needs the admin scope', async () => {
    const reader = await t.keyWith('ledger:read');
    const refused = await t.call('GET', '/v1/ledger/trial-balance?verify=true', undefined, { key: reader });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'forbidden', requiredScope: 'admin' });
    expect(refused.json().detail).toContain("'admin' scope");
    const plain = await t.call('GET', '/v1/ledger/trial-balance', undefined, { key: reader });
    expect(plain.json().verified).toBe(false);
    const admin = await t.keyWith('admin');
    const verified = await t.call('GET', '/v1/ledger/trial-balance?verify=true', undefined, { key: admin });
    expect(verified.statusCode).toBe(200);
    expect(verified.json().verified).toBe(true);
  });

  it('verification runs under a statement timeout: too slow is a 503 service_unavailable, not a 500', async () => {
    const slow = new LedgerService(db(), t.app.services.clock, { verifyTimeoutMs: 200 });
    if (ENGINE === 'postgres') {
      // Hold a lock on the postings so the scan waits, deterministically, past its timeout.
      let release!: () => void;
      const released = new Promise<void>((r) => {
        release = r;
      });
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => {
        locked = r;
      });
      const holder = transact(db(), async (trx) => {
        await sql`LOCK TABLE ledger_postings IN ACCESS EXCLUSIVE MODE`.execute(trx);
        locked();
        await released;
      });
      await isLocked;
      const started = Date.now();
      await expect(slow.trialBalance({ verify: true })).rejects.toMatchObject({
        code: 'service_unavailable',
        status: 503,
      });
      expect(Date.now() - started).toBeLessThan(10_000);
      release();
      await holder;
    }
    // PGlite cannot interrupt a query: there the scan completes. On both engines the timeout is
    // local to the verifying transaction and does not leak into the session or pool.
    expect((await slow.trialBalance({ verify: true })).length).toBeGreaterThan(0);
    const setting = await sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(db());
    expect(setting.rows[0]?.statement_timeout).toBe('0');
  });

  it('the account cache is bounded: posting to more accounts than it holds still works', async () => {
    const small = new LedgerService(db(), t.app.services.clock, { accountCacheMax: 4 });
    for (let i = 0; i < 12; i++) {
      await transact(db(), (trx) =>
        small.post(trx, { idempotencyKey: `lru-${i}`, postings: transfer('lru-src', `lru-${i}`, 10) }),
      );
    }
    expect(small.cachedAccounts).toBeLessThanOrEqual(4);
    // Evicted accounts are found again in the database, never created twice.
    await transact(db(), (trx) =>
      small.post(trx, { idempotencyKey: 'lru-again', postings: transfer('lru-src', 'lru-0', 5) }),
    );
    expect((await ledger().balance(acct('lru-0')))?.balanceMinor).toBe(15n);
    expect((await ledger().balance(acct('lru-src')))?.balanceMinor).toBe(-125n);
    const count = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM ledger_accounts WHERE code LIKE 'transfer_test:lru-%'`.execute(db());
    expect(count.rows[0]?.n).toBe(13);
  });

  it('the ledger endpoints need ledger:read', async () => {
    const other = await t.keyWith('catalog:read');
    expect((await t.call('GET', '/v1/ledger/trial-balance', undefined, { key: other })).statusCode).toBe(403);
    const reader = await t.keyWith('ledger:read');
    expect((await t.call('GET', '/v1/ledger/trial-balance', undefined, { key: reader })).statusCode).toBe(
      200,
    );
  });
});
