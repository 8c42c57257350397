import { type Kysely, sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import { PREPARED_MARKER } from '../../db/engine.js';
import { type Before, newestFirst, olderThan } from '../../db/keyset.js';
import type { Db, Executor } from '../../db/schema.js';
import { afterCommit, transact } from '../../db/transaction.js';
import { assert } from '../../kernel/assert.js';
import type { Clock } from '../../kernel/clock.js';
import { DomainError, invalidMany, notFound } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import { type AccountKey, accountCode, CHART } from './domain/chart.js';
import {
  checkTransaction,
  type Posting,
  postingsHash,
  reversed,
  signedAmount,
  type TransactionSpec,
} from './domain/transaction.js';
import {
  type AccountType,
  type LedgerAccountsTable,
  type LedgerTables,
  type LedgerTransactionsTable,
  ledgerTables,
} from './tables.js';

/** Running balances are split over this many rows per account (see the migration). */
export const BALANCE_SLOTS = 16;
/** Bound of one batch: larger bulk jobs post several batches. */
export const BATCH_MAX = 5_000;
/**
 * Account ids this node remembers. There is an account per customer and currency, so the count
 * grows with the business; 10,000 codes (about 2 MB) cover the hot accounts, and a miss costs one
 * indexed read.
 */
export const ACCOUNT_CACHE_MAX = 10_000;
/** How long the verified trial balance may scan postings before it gives up (PostgreSQL servers). */
export const VERIFY_TIMEOUT_MS = 30_000;

export interface Account {
  id: string;
  code: string;
  type: AccountType;
  owner: string | null;
  currency: string;
  normalSide: 'debit' | 'credit';
  /** Sums over every posting: exact at any size (bigint), since they may pass 2^53. */
  debitsMinor: bigint;
  creditsMinor: bigint;
  /** In the account's normal direction: a receivable owed to us is positive, revenue earned is positive. */
  balanceMinor: bigint;
}

export interface LedgerTransaction {
  id: string;
  idempotencyKey: string;
  reference: string | null;
  description: string | null;
  reverses: string | null;
  effectiveAt: Date;
  createdAt: Date;
  postings: Array<{
    accountId: string;
    account: string;
    currency: string;
    debitMinor: number;
    creditMinor: number;
  }>;
}

export interface PostResult {
  id: string;
  /** True when the idempotency key had been used with the same postings: nothing new was stored. */
  replayed: boolean;
}

export interface TrialBalanceLine {
  currency: string;
  /** Sums over every posting in the currency: exact at any size. */
  debitsMinor: bigint;
  creditsMinor: bigint;
  balanced: boolean;
}

/**
 * The double-entry ledger. Every money movement in Reprise is one call to `post` (or `postBatch`)
 * inside the database transaction of the change that causes it. Guarantees, paired: code checks
 * balance before insert and the database checks it again at commit; the postings are immutable;
 * an idempotency key with a hash of the postings makes retries harmless; running balances live in
 * slot rows updated in (account, slot) order, so concurrent posts neither lose updates nor deadlock.
 */
export class LedgerService {
  readonly #db: Db;
  /** The shared database seen through the ledger's tables, for reads outside a transaction. */
  readonly #tables: Kysely<LedgerTables>;
  readonly #clock: Clock;
  /** code → id, filled after commit; accounts never change, so entries need no expiry, only a bound. */
  readonly #accountIds: LRUCache<string, string>;
  /**
   * The slot each account uses, per database transaction: a transaction that posts several times
   * locks one slot row per account, so its later statements never wait on a slot chosen by another
   * writer (cross-statement lock order could otherwise form a cycle).
   */
  readonly #slotsOf = new WeakMap<object, Map<string, number>>();

  readonly #verifyTimeoutMs: number;

  constructor(db: Db, clock: Clock, opts: { verifyTimeoutMs?: number; accountCacheMax?: number } = {}) {
    this.#db = db;
    this.#tables = ledgerTables(db);
    this.#clock = clock;
    this.#accountIds = new LRUCache({ max: opts.accountCacheMax ?? ACCOUNT_CACHE_MAX });
    this.#verifyTimeoutMs = opts.verifyTimeoutMs ?? VERIFY_TIMEOUT_MS;
  }

  /** How many account ids this node has cached (bounded by ACCOUNT_CACHE_MAX). */
  get cachedAccounts(): number {
    return this.#accountIds.size;
  }

  async post(trx: Executor, spec: TransactionSpec): Promise<PostResult> {
    const [result] = await this.postBatch(trx, [spec]);
    return result!;
  }

  /** Posts many transactions in the caller's database transaction: one round of statements. */
  async postBatch(trx: Executor, specs: TransactionSpec[]): Promise<PostResult[]> {
    assert(specs.length <= BATCH_MAX, `ledger batch of ${specs.length} exceeds ${BATCH_MAX}`);
    if (specs.length === 0) return [];
    const errors = specs.flatMap((spec, i) =>
      checkTransaction(spec).map((e) => ({ ...e, path: specs.length === 1 ? e.path : `[${i}].${e.path}` })),
    );
    if (errors.length > 0) throw invalidMany(errors);
    const keys = new Set<string>();
    for (const spec of specs) {
      assert(!keys.has(spec.idempotencyKey), `idempotency key ${spec.idempotencyKey} twice in one batch`);
      keys.add(spec.idempotencyKey);
    }

    const accountIds = await this.#ensureAccounts(
      trx,
      specs.flatMap((s) => s.postings.map((p) => p.account)),
    );
    const now = this.#clock.now();
    const rows = specs.map((spec) => ({
      id: newId('ledgerTransaction'),
      idempotency_key: spec.idempotencyKey,
      postings_hash: postingsHash(spec),
      reference: spec.reference ?? null,
      description: spec.description ?? null,
      reverses: spec.reverses ?? null,
      effective_at: spec.effectiveAt ?? now,
      created_at: now,
    }));
    return this.#insert(trx, specs, rows, accountIds);
  }

  /**
   * One statement stores the transactions, their postings and their balance slots, so the
   * database's per-statement checks see each transaction whole (see the migration), and a post
   * costs one round trip. Transactions whose key exists are skipped and answered from the stored
   * row (same postings hash) or refused (another hash).
   */
  async #insert(
    trx: Executor,
    specs: TransactionSpec[],
    rows: LedgerTransactionsTable[],
    accountIds: Map<string, string>,
  ): Promise<PostResult[]> {
    const p = {
      txn: [] as string[],
      seq: [] as number[],
      account: [] as string[],
      currency: [] as string[],
      amount: [] as number[],
      slot: [] as number[],
    };
    let slotOf = trx.isTransaction ? this.#slotsOf.get(trx) : undefined;
    if (!slotOf) {
      slotOf = new Map<string, number>();
      if (trx.isTransaction) this.#slotsOf.set(trx, slotOf);
    }
    rows.forEach((row, i) => {
      specs[i]!.postings.forEach((posting, seq) => {
        const accountId = accountIds.get(accountCode(posting.account));
        assert(accountId, `account ${accountCode(posting.account)} was not ensured`);
        let slot = slotOf.get(accountId);
        if (slot === undefined) {
          // Spreading writers only: no need for cryptographic randomness here.
          slot = Math.floor(Math.random() * BALANCE_SLOTS);
          slotOf.set(accountId, slot);
        }
        p.txn.push(row.id);
        p.seq.push(seq);
        p.account.push(accountId);
        p.currency.push(posting.account.currency);
        p.amount.push(signedAmount(posting));
        p.slot.push(slot);
      });
    });
    const col = <K extends keyof LedgerTransactionsTable>(k: K) => rows.map((r) => r[k]);
    const iso = (k: 'effective_at' | 'created_at') => rows.map((r) => r[k].toISOString());
    const answered = await sql<{
      idempotency_key: string;
      postings_hash: string;
      inserted_id: string | null;
      existing_id: string | null;
      existing_hash: string | null;
    }>`${sql.raw(PREPARED_MARKER)}
      WITH input_t AS (
        SELECT * FROM unnest(
          ${col('id')}::text[], ${col('idempotency_key')}::text[], ${col('postings_hash')}::text[], ${col('reference')}::text[],
          ${col('description')}::text[], ${col('reverses')}::text[], ${iso('effective_at')}::timestamptz[], ${iso('created_at')}::timestamptz[]
        ) AS x (id, idempotency_key, postings_hash, reference, description, reverses, effective_at, created_at)
      ),
      ins AS (
        INSERT INTO ledger_transactions (id, idempotency_key, postings_hash, reference, description, reverses, effective_at, created_at)
        SELECT * FROM input_t
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id, idempotency_key
      ),
      input_p AS (
        SELECT * FROM unnest(
          ${p.txn}::text[], ${p.seq}::smallint[], ${p.account}::text[], ${p.currency}::text[], ${p.amount}::bigint[], ${p.slot}::smallint[]
        ) AS y (transaction_id, seq, account_id, currency, amount_minor, slot)
        WHERE y.transaction_id IN (SELECT id FROM ins)
      ),
      ins_p AS (
        INSERT INTO ledger_postings (transaction_id, seq, account_id, currency, amount_minor)
        SELECT transaction_id, seq, account_id, currency, amount_minor FROM input_p
      ),
      ins_s AS (
        -- Sorted by (account, slot): writers lock slot rows in one global order, never deadlocking.
        INSERT INTO ledger_balance_slots (account_id, slot, currency, debits_minor, credits_minor)
        SELECT account_id, slot, currency,
               coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0),
               coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)
        FROM input_p GROUP BY account_id, slot, currency ORDER BY account_id, slot
        ON CONFLICT (account_id, slot) DO UPDATE SET
          debits_minor = ledger_balance_slots.debits_minor + excluded.debits_minor,
          credits_minor = ledger_balance_slots.credits_minor + excluded.credits_minor
      )
      SELECT i.idempotency_key, i.postings_hash, ins.id AS inserted_id, e.id AS existing_id, e.postings_hash AS existing_hash
      FROM input_t i
      LEFT JOIN ins ON ins.idempotency_key = i.idempotency_key
      -- By index whatever the table's size: this statement is prepared once per connection, and a
      -- generic plan made while the table was small would hash-join a scan of every transaction.
      LEFT JOIN LATERAL (
        SELECT e.id, e.postings_hash FROM ledger_transactions e
        WHERE ins.id IS NULL AND e.idempotency_key = i.idempotency_key LIMIT 1
      ) e ON true`.execute(trx);

    const byKey = new Map(answered.rows.map((r) => [r.idempotency_key, r]));
    const late = answered.rows
      .filter((r) => r.inserted_id === null && r.existing_id === null)
      .map((r) => r.idempotency_key);
    if (late.length > 0) {
      // Committed by a concurrent writer after this statement's snapshot: read it now.
      const found = await ledgerTables(trx)
        .selectFrom('ledger_transactions')
        .select(['id', 'idempotency_key', 'postings_hash'])
        .where('idempotency_key', 'in', late)
        .execute();
      for (const f of found)
        Object.assign(byKey.get(f.idempotency_key)!, { existing_id: f.id, existing_hash: f.postings_hash });
    }
    return rows.map((row) => {
      const r = byKey.get(row.idempotency_key);
      assert(r, `ledger transaction ${row.idempotency_key} unanswered`);
      if (r.inserted_id) return { id: r.inserted_id, replayed: false };
      assert(r.existing_id, `ledger transaction ${row.idempotency_key} neither inserted nor found`);
      if (r.existing_hash !== row.postings_hash) {
        throw new DomainError(
          'ledger_conflict',
          `Ledger idempotency key '${row.idempotency_key}' was used for other postings (transaction ${r.existing_id}).`,
        );
      }
      return { id: r.existing_id, replayed: true };
    });
  }

  /** Ids of these accounts, creating the missing ones. */
  async #ensureAccounts(trx: Executor, keys: AccountKey[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const missing = new Map<string, AccountKey>();
    for (const key of keys) {
      const code = accountCode(key);
      const id = this.#accountIds.get(code);
      if (id) out.set(code, id);
      else missing.set(code, key);
    }
    if (missing.size === 0) return out;
    const db = ledgerTables(trx);
    const now = this.#clock.now();
    const rows = [...missing.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([code, key]) => ({
        id: newId('ledgerAccount'),
        code,
        type: key.type,
        owner: key.owner ?? null,
        currency: key.currency,
        normal_side: CHART[key.type].normalSide,
        created_at: now,
      }));
    await db
      .insertInto('ledger_accounts')
      .values(rows)
      .onConflict((oc) => oc.column('code').doNothing())
      .execute();
    const found = await db
      .selectFrom('ledger_accounts')
      .select(['id', 'code'])
      .where('code', 'in', [...missing.keys()])
      .execute();
    for (const row of found) out.set(row.code, row.id);
    // Remember them only once they exist for everybody.
    afterCommit(trx, () => {
      for (const row of found) this.#accountIds.set(row.code, row.id);
    });
    return out;
  }

  /** Posts the exact opposite of transaction `id`, referencing it. */
  async reverse(
    trx: Executor,
    id: string,
    idempotencyKey: string,
    description?: string,
  ): Promise<PostResult> {
    const original = await this.getTransaction(id, trx);
    const accounts = await ledgerTables(trx)
      .selectFrom('ledger_accounts')
      .selectAll()
      .where(
        'id',
        'in',
        original.postings.map((p) => p.accountId),
      )
      .execute();
    const keyOf = new Map(
      accounts.map((a) => [a.id, { type: a.type, owner: a.owner, currency: a.currency }]),
    );
    const postings: Posting[] = original.postings.map((p) =>
      p.debitMinor > 0
        ? { account: keyOf.get(p.accountId)!, debit: p.debitMinor }
        : { account: keyOf.get(p.accountId)!, credit: p.creditMinor },
    );
    return this.post(trx, {
      idempotencyKey,
      postings: reversed(postings),
      reference: original.reference,
      description: description ?? `reversal of ${original.id}`,
      reverses: original.id,
    });
  }

  // ---- reads -------------------------------------------------------------------------------

  async getTransaction(id: string, trx: Executor = this.#db): Promise<LedgerTransaction> {
    const db = ledgerTables(trx);
    const [txn] = await this.#hydrate(
      db,
      await db.selectFrom('ledger_transactions').selectAll().where('id', '=', id).execute(),
    );
    if (!txn) throw notFound('ledger transaction', id);
    return txn;
  }

  async listTransactions(
    filter: { reference?: string | undefined; limit: number; after?: string | undefined },
    trx: Executor = this.#db,
  ) {
    const db = ledgerTables(trx);
    let q = db
      .selectFrom('ledger_transactions')
      .selectAll()
      .orderBy('id')
      .limit(filter.limit + 1);
    if (filter.reference) q = q.where('reference', '=', filter.reference);
    if (filter.after) q = q.where('id', '>', filter.after);
    return this.#hydrate(db, await q.execute());
  }

  /**
   * Transactions filed under any of these references (a customer's invoices, payments, refunds:
   * the customer timeline), newest first by effective time then id, `limit` of them older than
   * `before`. The reference index finds them; the references are bounded by the caller.
   */
  async transactionsReferencing(
    references: readonly string[],
    before: Before | undefined,
    limit: number,
  ): Promise<LedgerTransaction[]> {
    if (references.length === 0) return [];
    const rows = await this.#tables
      .selectFrom('ledger_transactions')
      .selectAll()
      .where('reference', 'in', [...new Set(references)])
      .where(olderThan('effective_at', 'id', before))
      .orderBy(newestFirst('effective_at'))
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return this.#hydrate(this.#tables, rows);
  }

  async #hydrate(db: Kysely<LedgerTables>, rows: LedgerTransactionsTable[]): Promise<LedgerTransaction[]> {
    if (rows.length === 0) return [];
    const postings = await db
      .selectFrom('ledger_postings as p')
      .innerJoin('ledger_accounts as a', 'a.id', 'p.account_id')
      .select(['p.transaction_id', 'p.seq', 'p.account_id', 'a.code', 'p.currency', 'p.amount_minor'])
      .where(
        'p.transaction_id',
        'in',
        rows.map((r) => r.id),
      )
      .orderBy('p.transaction_id')
      .orderBy('p.seq')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      idempotencyKey: r.idempotency_key,
      reference: r.reference,
      description: r.description,
      reverses: r.reverses,
      effectiveAt: r.effective_at,
      createdAt: r.created_at,
      postings: postings
        .filter((p) => p.transaction_id === r.id)
        .map((p) => ({
          accountId: p.account_id,
          account: p.code,
          currency: p.currency,
          debitMinor: Math.max(p.amount_minor, 0),
          creditMinor: Math.max(-p.amount_minor, 0),
        })),
    }));
  }

  async listAccounts(
    filter: {
      type?: AccountType | undefined;
      owner?: string | undefined;
      currency?: string | undefined;
      limit: number;
      after?: string | undefined;
    },
    trx: Executor = this.#db,
  ): Promise<Account[]> {
    let q = ledgerTables(trx)
      .selectFrom('ledger_accounts as a')
      .leftJoin('ledger_balance_slots as s', 's.account_id', 'a.id')
      .select([
        'a.id',
        'a.code',
        'a.type',
        'a.owner',
        'a.currency',
        'a.normal_side',
        'a.created_at',
        // numeric sums as text: exact however large (a bigint column would refuse past 2^53).
        sql<string>`coalesce(sum(s.debits_minor), 0)::text`.as('debits'),
        sql<string>`coalesce(sum(s.credits_minor), 0)::text`.as('credits'),
      ])
      .groupBy('a.id')
      .orderBy('a.id')
      .limit(filter.limit + 1);
    if (filter.type) q = q.where('a.type', '=', filter.type);
    if (filter.owner) q = q.where('a.owner', '=', filter.owner);
    if (filter.currency) q = q.where('a.currency', '=', filter.currency);
    if (filter.after) q = q.where('a.id', '>', filter.after);
    return (await q.execute()).map((r) => toAccount(r, BigInt(r.debits), BigInt(r.credits)));
  }

  /** Balance of one account (by key), read from its slots. Zero for an account never posted to. */
  async balance(key: AccountKey, trx: Executor = this.#db): Promise<Account | undefined> {
    const [account] = await this.listAccounts({ limit: 1, ...key, owner: key.owner ?? undefined }, trx).then(
      (list) => list.filter((a) => a.code === accountCode(key)),
    );
    return account;
  }

  /**
   * Debits and credits per currency from the running balances; with `verify`, recomputed from the
   * postings as well, and any difference between the two is reported as unbalanced. Verifying
   * scans every posting: it runs in its own transaction under a statement timeout, and a timeout
   * is a 503 `service_unavailable` (PGlite cannot interrupt a query: there it runs to the end).
   */
  async trialBalance(opts: { verify?: boolean } = {}): Promise<TrialBalanceLine[]> {
    if (!opts.verify) return this.#trialBalanceFromSlots(this.#tables);
    try {
      return await transact(this.#db, async (trx) => {
        await sql`SELECT set_config('statement_timeout', ${String(this.#verifyTimeoutMs)}, true)`.execute(
          trx,
        );
        const db = ledgerTables(trx);
        const lines = await this.#trialBalanceFromSlots(db);
        const fromPostings = await db
          .selectFrom('ledger_postings')
          .select([
            'currency',
            sql<string>`coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0)::text`.as('debits'),
            sql<string>`coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)::text`.as('credits'),
          ])
          .groupBy('currency')
          .execute();
        return lines.map((line) => {
          const truth = fromPostings.find((p) => p.currency === line.currency);
          const same =
            truth !== undefined &&
            BigInt(truth.debits) === line.debitsMinor &&
            BigInt(truth.credits) === line.creditsMinor;
          return { ...line, balanced: line.balanced && same };
        });
      });
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code === QUERY_CANCELED) {
        throw new DomainError(
          'service_unavailable',
          `Verifying the trial balance took longer than ${this.#verifyTimeoutMs} ms and was stopped; the unverified trial balance is still available.`,
        );
      }
      throw error;
    }
  }

  async #trialBalanceFromSlots(db: Kysely<LedgerTables>): Promise<TrialBalanceLine[]> {
    const rows = await db
      .selectFrom('ledger_balance_slots')
      .select([
        'currency',
        sql<string>`sum(debits_minor)::text`.as('debits'),
        sql<string>`sum(credits_minor)::text`.as('credits'),
      ])
      .groupBy('currency')
      .orderBy('currency')
      .execute();
    return rows.map((r) => {
      const debitsMinor = BigInt(r.debits);
      const creditsMinor = BigInt(r.credits);
      return { currency: r.currency, debitsMinor, creditsMinor, balanced: debitsMinor === creditsMinor };
    });
  }
}

/** SQLSTATE of a statement stopped by statement_timeout. */
const QUERY_CANCELED = '57014';

function toAccount(
  r: Pick<LedgerAccountsTable, 'id' | 'code' | 'type' | 'owner' | 'currency' | 'normal_side'>,
  debits: bigint,
  credits: bigint,
): Account {
  return {
    id: r.id,
    code: r.code,
    type: r.type,
    owner: r.owner,
    currency: r.currency,
    normalSide: r.normal_side,
    debitsMinor: debits,
    creditsMinor: credits,
    balanceMinor: r.normal_side === 'debit' ? debits - credits : credits - debits,
  };
}
