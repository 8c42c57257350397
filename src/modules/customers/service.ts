import type { Kysely } from 'kysely';
import type { MasterKey } from '../../crypto/envelope.js';
import { newDataKey, open, seal } from '../../crypto/envelope.js';
import { KEY_BATCH_MAX, type KeyStore } from '../../crypto/key-store.js';
import { isUniqueViolation } from '../../db/errors.js';
import type { Db, Executor } from '../../db/schema.js';
import type { Clock } from '../../kernel/clock.js';
import { alreadyExists, DomainError, invalid, notFound } from '../../kernel/errors.js';
import { isIdOf, newId } from '../../kernel/ids.js';
import type { CatalogService } from '../catalog/service.js';
import type { TestClockService } from '../test-clocks/service.js';
import { type CustomersTable, type CustomerTables, customerTables } from './tables.js';

export interface Customer {
  id: string;
  externalId: string;
  marketId: string;
  billingCycleDay: number | null;
  testClockId: string | null;
  email: string | null;
  name: string | null;
  erasedAt: Date | null;
  createdAt: Date;
}

export type CustomerAccount = Omit<Customer, PersonalField>;

export interface CustomerInput {
  externalId: string;
  market: string;
  email?: string | undefined;
  name?: string | undefined;
  billingCycleDay?: number | undefined;
  testClock?: string | undefined;
}

/** The personal fields of a customer: sealed at rest, null once erased. */
export type PersonalField = 'email' | 'name';
export const PERSONAL_FIELDS: readonly PersonalField[] = ['email', 'name'];

/**
 * Customers, keyed by the identity system's user id (`externalId`). Personal data (email, name) is
 * sealed under a per-customer data key held, wrapped by the master key, in the key store (another
 * database, ADR 0012); erasure destroys that key, so the data is unreadable forever, backups of
 * the data database included, while ids, amounts and the books stay intact.
 */
export class CustomerService {
  readonly #db: Db;
  /** The shared database seen through this module's tables, for reads outside a transaction. */
  readonly #tables: Kysely<CustomerTables>;
  readonly #clock: Clock;
  readonly #masterKey: MasterKey;
  readonly #keys: KeyStore;
  readonly #catalog: CatalogService;
  readonly #testClocks: TestClockService;

  constructor(
    db: Db,
    clock: Clock,
    masterKey: MasterKey,
    keys: KeyStore,
    catalog: CatalogService,
    testClocks: TestClockService,
  ) {
    this.#db = db;
    this.#tables = customerTables(db);
    this.#clock = clock;
    this.#masterKey = masterKey;
    this.#keys = keys;
    this.#catalog = catalog;
    this.#testClocks = testClocks;
  }

  async create(input: CustomerInput, trx: Executor): Promise<Customer> {
    const market = await this.#catalog.getMarket(input.market, trx).catch((e: unknown) => {
      if (e instanceof DomainError && e.code === 'not_found')
        throw invalid('market', `unknown market '${input.market}'`);
      throw e;
    });
    let testClockId: string | null = null;
    if (input.testClock !== undefined) {
      const clock = await this.#testClocks.get(input.testClock, trx).catch((e: unknown) => {
        if (e instanceof DomainError && e.code === 'not_found')
          throw invalid('testClock', `unknown test clock '${input.testClock}'`);
        throw e;
      });
      testClockId = clock.id;
    }
    const id = newId('customer');
    const dataKey = newDataKey();
    const now = this.#clock.now();
    const row: CustomersTable = {
      id,
      external_id: input.externalId,
      market_id: market.id,
      billing_cycle_day: input.billingCycleDay ?? null,
      test_clock_id: testClockId,
      email_cipher: input.email === undefined ? null : seal(dataKey, input.email, `${id}:email`),
      name_cipher: input.name === undefined ? null : seal(dataKey, input.name, `${id}:name`),
      erased_at: null,
      created_at: now,
    };
    try {
      await customerTables(trx).insertInto('customers').values(row).execute();
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyExists('customer', 'externalId', input.externalId);
      throw e;
    }
    // Last, so a refused row stores no key; if this transaction still rolls back, the key opens
    // nothing and the sweep deletes it.
    await this.#keys.put(
      id,
      { wrapped: this.#masterKey.wrap(dataKey, id), masterKeyId: this.#masterKey.id },
      now,
    );
    return toCustomer(row, { email: input.email ?? null, name: input.name ?? null });
  }

  /**
   * A customer without its personal fields: no key-store read. For callers that need only ids,
   * market, clock or erasure (payments, billing).
   */
  async account(ref: string, trx: Executor = this.#db): Promise<CustomerAccount> {
    const {
      email: _e,
      name: _n,
      ...account
    } = toCustomer(await this.#row(ref, trx), { email: null, name: null });
    return account;
  }

  /** The accounts of these customer ids, in one read (a batch of renewals); unknown ids are absent. */
  accounts(ids: readonly string[], trx: Executor = this.#db): Promise<Map<string, CustomerAccount>> {
    return this.#accountsBy('id', ids, trx);
  }

  /** The accounts of these external ids, in one read (the entitlement projection's misses); unknown ids are absent. */
  accountsByExternalIds(
    externalIds: readonly string[],
    trx: Executor = this.#db,
  ): Promise<Map<string, CustomerAccount>> {
    return this.#accountsBy('external_id', externalIds, trx);
  }

  /** Accounts (no personal data, no key-store read) keyed by the column they were asked by. */
  async #accountsBy(
    column: 'id' | 'external_id',
    values: readonly string[],
    trx: Executor,
  ): Promise<Map<string, CustomerAccount>> {
    const out = new Map<string, CustomerAccount>();
    if (values.length === 0) return out;
    const rows = await customerTables(trx)
      .selectFrom('customers')
      .selectAll()
      .where(column, 'in', [...new Set(values)])
      .execute();
    for (const row of rows) {
      const { email: _e, name: _n, ...account } = toCustomer(row, { email: null, name: null });
      out.set(row[column], account);
    }
    return out;
  }

  async get(ref: string, trx: Executor = this.#db): Promise<Customer> {
    return (await this.#open([await this.#row(ref, trx)]))[0]!;
  }

  /**
   * Customers by id, externalId or test clock, a page at a time (`limit + 1` rows, see toPage).
   * A customer whose data key is missing (an interrupted erasure) does not fail the page: its
   * personal fields read null and `onKeyMissing` is told, to log the inconsistency.
   */
  async list(
    page: {
      limit: number;
      after?: string | undefined;
      externalId?: string | undefined;
      testClock?: string | undefined;
    },
    onKeyMissing: (customerId: string) => void = () => {},
  ): Promise<Customer[]> {
    let q = this.#tables
      .selectFrom('customers')
      .selectAll()
      .orderBy('id')
      .limit(page.limit + 1);
    if (page.after) q = q.where('id', '>', page.after);
    if (page.externalId !== undefined) q = q.where('external_id', '=', page.externalId);
    if (page.testClock) q = q.where('test_clock_id', '=', page.testClock);
    return this.#open(await q.execute(), onKeyMissing);
  }

  /**
   * Ids of customers on a test clock (simulated), at most `max`; `complete` says whether that was
   * all of them. Reports leave these customers out of live figures. The partial index on
   * test_clock_id holds exactly these rows.
   */
  async testClockCustomerIds(trx: Executor, max: number): Promise<{ ids: string[]; complete: boolean }> {
    const rows = await customerTables(trx)
      .selectFrom('customers')
      .select('id')
      .where('test_clock_id', 'is not', null)
      .limit(max + 1)
      .execute();
    return { ids: rows.slice(0, max).map((r) => r.id), complete: rows.length <= max };
  }

  /**
   * The personal fields of a customer as they read now: null once erased (or if it is gone).
   * Stored idempotent responses keep no personal data; a replay rebuilds it from here.
   */
  async personal(customerId: string): Promise<Record<PersonalField, string | null>> {
    const row = await this.#tables
      .selectFrom('customers')
      .selectAll()
      .where('id', '=', customerId)
      .executeTakeFirst();
    if (!row) return { email: null, name: null };
    const [c] = await this.#open([row]);
    return { email: c!.email, name: c!.name };
  }

  /**
   * Crypto-shredding: the data key is deleted from the key store and the ciphertexts from the
   * row; the row stays. Needs no key, so it completes even if an earlier attempt deleted the key
   * and then failed to commit.
   */
  async erase(ref: string, trx: Executor): Promise<Customer> {
    const existing = await this.#row(ref, trx);
    if (existing.erased_at) return toCustomer(existing, { email: null, name: null });
    const row = await customerTables(trx)
      .updateTable('customers')
      .set({ email_cipher: null, name_cipher: null, erased_at: this.#clock.now() })
      .where('id', '=', existing.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    // Last: if deleting the key fails, the row is not marked erased either (the request fails).
    await this.#keys.delete(existing.id);
    // An embedded key store also scrubs the deleted key's bytes from its files (ADR 0012).
    await this.#keys.purgeDeleted();
    return toCustomer(row, { email: null, name: null });
  }

  /** The customer's "now": its test clock's frozen time, or the system clock. */
  async now(ref: string, trx: Executor = this.#db): Promise<Date> {
    const customer = await this.#row(ref, trx);
    return customer.test_clock_id
      ? (await this.#testClocks.get(customer.test_clock_id, trx)).frozenTime
      : this.#clock.now();
  }

  /**
   * Deletes keys created in the window whose customer does not exist (its creating transaction
   * rolled back after the key was stored). Bounded per call.
   */
  async sweepOrphanKeys(options: { olderThanMs?: number; windowMs?: number; max?: number } = {}) {
    const to = new Date(this.#clock.now().getTime() - (options.olderThanMs ?? 3_600_000));
    const from = new Date(to.getTime() - (options.windowMs ?? 24 * 3_600_000));
    const max = options.max ?? 10_000;
    let after: { at: Date; id: string } | undefined;
    let seen = 0;
    let deleted = 0;
    while (seen < max) {
      const page = await this.#keys.createdBetween(from, to, Math.min(KEY_BATCH_MAX, max - seen), after);
      if (page.length === 0) break;
      seen += page.length;
      after = page.at(-1);
      const existing = new Set(
        (
          await this.#tables
            .selectFrom('customers')
            .select('id')
            .where(
              'id',
              'in',
              page.map((k) => k.id),
            )
            .execute()
        ).map((r) => r.id),
      );
      for (const k of page) {
        if (existing.has(k.id)) continue;
        await this.#keys.delete(k.id);
        deleted++;
      }
    }
    return { seen, deleted };
  }

  async #row(ref: string, trx: Executor): Promise<CustomersTable> {
    const row = await customerTables(trx)
      .selectFrom('customers')
      .selectAll()
      .where(isIdOf('customer', ref) ? 'id' : 'external_id', '=', ref)
      .executeTakeFirst();
    if (!row) throw notFound('customer', ref);
    return row;
  }

  /**
   * Opens the sealed fields of these rows with one key-store read (none if nothing is sealed).
   * A missing key throws `data_key_missing`, unless `onKeyMissing` is given: then that customer's
   * personal fields are null.
   */
  async #open(rows: CustomersTable[], onKeyMissing?: (customerId: string) => void): Promise<Customer[]> {
    const sealed = rows.filter((r) => !r.erased_at && (r.email_cipher || r.name_cipher));
    const keys = sealed.length > 0 ? await this.#keys.get(sealed.map((r) => r.id)) : new Map();
    return rows.map((row) => {
      if (row.erased_at || !(row.email_cipher || row.name_cipher))
        return toCustomer(row, { email: null, name: null });
      const stored = keys.get(row.id);
      if (!stored && onKeyMissing) {
        onKeyMissing(row.id);
        return toCustomer(row, { email: null, name: null });
      }
      if (!stored)
        throw new DomainError(
          'data_key_missing',
          `The data key of customer ${row.id} is not in the key store: it was erased by a request that did not complete (erase it again), or the key store is not the one of this database.`,
        );
      if (stored.masterKeyId !== this.#masterKey.id)
        throw new DomainError(
          'master_key_mismatch',
          `The data key of customer ${row.id} was wrapped by master key ${stored.masterKeyId}, but this node's master key is ${this.#masterKey.id}: give every node the same REPRISE_MASTER_KEY.`,
        );
      const dataKey = this.#masterKey.unwrap(stored.wrapped, row.id);
      return toCustomer(row, {
        email: row.email_cipher ? open(dataKey, row.email_cipher, `${row.id}:email`).toString('utf8') : null,
        name: row.name_cipher ? open(dataKey, row.name_cipher, `${row.id}:name`).toString('utf8') : null,
      });
    });
  }
}

function toCustomer(row: CustomersTable, personal: Record<PersonalField, string | null>): Customer {
  return {
    id: row.id,
    externalId: row.external_id,
    marketId: row.market_id,
    billingCycleDay: row.billing_cycle_day,
    testClockId: row.test_clock_id,
    email: personal.email,
    name: personal.name,
    erasedAt: row.erased_at,
    createdAt: row.created_at,
  };
}
