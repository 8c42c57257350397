import type { MasterKey } from '../../crypto/envelope.js';
import { newDataKey, open, seal } from '../../crypto/envelope.js';
import { isUniqueViolation } from '../../db/errors.js';
import type { Db, Executor } from '../../db/schema.js';
import type { Clock } from '../../kernel/clock.js';
import { alreadyExists, DomainError, invalid, notFound } from '../../kernel/errors.js';
import { isIdOf, newId } from '../../kernel/ids.js';
import type { CatalogService } from '../catalog/service.js';
import type { TestClockService } from '../test-clocks/service.js';
import type { CustomersTable } from './tables.js';

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

export interface CustomerInput {
  externalId: string;
  market: string;
  email?: string | undefined;
  name?: string | undefined;
  billingCycleDay?: number | undefined;
  testClock?: string | undefined;
}

/**
 * Customers, keyed by the identity system's user id (`externalId`). Personal data (email, name) is
 * sealed under a per-customer data key; erasure destroys that key, so the data is unreadable
 * forever (backups included) while ids, amounts and the books stay intact.
 */
export class CustomerService {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #masterKey: MasterKey;
  readonly #catalog: CatalogService;
  readonly #testClocks: TestClockService;

  constructor(
    db: Db,
    clock: Clock,
    masterKey: MasterKey,
    catalog: CatalogService,
    testClocks: TestClockService,
  ) {
    this.#db = db;
    this.#clock = clock;
    this.#masterKey = masterKey;
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
    const row: CustomersTable = {
      id,
      external_id: input.externalId,
      market_id: market.id,
      billing_cycle_day: input.billingCycleDay ?? null,
      test_clock_id: testClockId,
      wrapped_data_key: this.#masterKey.wrap(dataKey, id),
      master_key_id: this.#masterKey.id,
      email_cipher: input.email === undefined ? null : seal(dataKey, input.email, `${id}:email`),
      name_cipher: input.name === undefined ? null : seal(dataKey, input.name, `${id}:name`),
      erased_at: null,
      created_at: this.#clock.now(),
    };
    try {
      await trx.insertInto('customers').values(row).execute();
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyExists('customer', 'externalId', input.externalId);
      throw e;
    }
    return this.#toCustomer(row);
  }

  async get(ref: string, trx: Executor = this.#db): Promise<Customer> {
    const row = await trx
      .selectFrom('customers')
      .selectAll()
      .where(isIdOf('customer', ref) ? 'id' : 'external_id', '=', ref)
      .executeTakeFirst();
    if (!row) throw notFound('customer', ref);
    return this.#toCustomer(row);
  }

  async findByExternalId(externalId: string, trx: Executor = this.#db): Promise<Customer | undefined> {
    const row = await trx
      .selectFrom('customers')
      .selectAll()
      .where('external_id', '=', externalId)
      .executeTakeFirst();
    return row ? this.#toCustomer(row) : undefined;
  }

  async list(page: {
    limit: number;
    after?: string | undefined;
    testClock?: string | undefined;
  }): Promise<Customer[]> {
    let q = this.#db
      .selectFrom('customers')
      .selectAll()
      .orderBy('id')
      .limit(page.limit + 1);
    if (page.after) q = q.where('id', '>', page.after);
    if (page.testClock) q = q.where('test_clock_id', '=', page.testClock);
    return (await q.execute()).map((r) => this.#toCustomer(r));
  }

  /** Crypto-shredding: the wrapped data key and the ciphertexts are deleted; the row stays. */
  async erase(ref: string, trx: Executor): Promise<Customer> {
    const existing = await this.get(ref, trx);
    if (existing.erasedAt) return existing;
    const row = await trx
      .updateTable('customers')
      .set({ wrapped_data_key: null, email_cipher: null, name_cipher: null, erased_at: this.#clock.now() })
      .where('id', '=', existing.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return this.#toCustomer(row);
  }

  /** The customer's "now": its test clock's frozen time, or the system clock. */
  async now(ref: string, trx: Executor = this.#db): Promise<Date> {
    const customer = await this.get(ref, trx);
    return customer.testClockId
      ? (await this.#testClocks.get(customer.testClockId, trx)).frozenTime
      : this.#clock.now();
  }

  #toCustomer(row: CustomersTable): Customer {
    let email: string | null = null;
    let name: string | null = null;
    if (row.wrapped_data_key) {
      const dataKey = this.#masterKey.unwrap(row.wrapped_data_key, row.id);
      if (row.email_cipher) email = open(dataKey, row.email_cipher, `${row.id}:email`).toString('utf8');
      if (row.name_cipher) name = open(dataKey, row.name_cipher, `${row.id}:name`).toString('utf8');
    }
    return {
      id: row.id,
      externalId: row.external_id,
      marketId: row.market_id,
      billingCycleDay: row.billing_cycle_day,
      testClockId: row.test_clock_id,
      email,
      name,
      erasedAt: row.erased_at,
      createdAt: row.created_at,
    };
  }
}
