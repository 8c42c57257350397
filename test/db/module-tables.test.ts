import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { type Database, type Executor, ownTables } from '../../src/db/schema.js';
import { eventTables } from '../../src/events/tables.js';
import { idempotencyTables } from '../../src/http/tables.js';
import { jobTables } from '../../src/jobs/tables.js';
import { apiKeyTables } from '../../src/modules/api-keys/tables.js';
import { auditTables } from '../../src/modules/audit/tables.js';
import { billingTables } from '../../src/modules/billing/tables.js';
import type { MarketsTable } from '../../src/modules/catalog/tables.js';
import { catalogTables } from '../../src/modules/catalog/tables.js';
import { checkoutTables } from '../../src/modules/checkout/tables.js';
import { customerTables } from '../../src/modules/customers/tables.js';
import { ledgerTables } from '../../src/modules/ledger/tables.js';
import { paymentTables } from '../../src/modules/payments/tables.js';
import { portalTables } from '../../src/modules/portal/tables.js';
import { testClockTables } from '../../src/modules/test-clocks/tables.js';
import { webhookTables } from '../../src/modules/webhooks/tables.js';

// A database that compiles queries and never runs them.
const db = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

/**
 * Type-level half: checked by `tsc -p tsconfig.check.json`. Each `@ts-expect-error` fails the
 * typecheck if the line below it ever compiles, i.e. if a module could name another's table.
 * At run time these only build queries, never execute them.
 */
function crossModuleQueriesDoNotCompile(trx: Executor): void {
  // @ts-expect-error customers are not the catalog's
  catalogTables(trx).selectFrom('customers');
  // @ts-expect-error the ledger does not read the catalog
  ledgerTables(trx).selectFrom('markets');
  // @ts-expect-error nor write payments
  ledgerTables(trx).insertInto('payments');
  // @ts-expect-error the scheduler does not move test clocks itself
  jobTables(trx).updateTable('test_clocks');
  // @ts-expect-error test clocks do not delete jobs
  testClockTables(trx).deleteFrom('scheduled_jobs');
  // @ts-expect-error api keys do not read the audit log
  apiKeyTables(trx).selectFrom('audit_log');
  // @ts-expect-error customers do not read the catalog's markets (they ask CatalogService)
  customerTables(trx).selectFrom('markets');
  // @ts-expect-error the audit log does not read customers
  auditTables(trx).selectFrom('customers');
  // @ts-expect-error the idempotency store does not write the audit log
  idempotencyTables(trx).insertInto('audit_log');
  // @ts-expect-error payments do not read customers (they ask CustomerService)
  paymentTables(trx).selectFrom('customers');
  // @ts-expect-error the events outbox does not read subscriptions' payments (it is told, in append)
  eventTables(trx).selectFrom('payments');
  // @ts-expect-error and no module writes the outbox but through EventsOutbox
  paymentTables(trx).insertInto('events');
  // @ts-expect-error billing does not read customers (it asks CustomerService)
  billingTables(trx).selectFrom('customers');
  // @ts-expect-error nor payments (it asks PaymentService)
  billingTables(trx).selectFrom('payments');
  // @ts-expect-error and payments do not read invoices
  paymentTables(trx).selectFrom('invoices');
  // @ts-expect-error a join into another module's table does not compile either
  catalogTables(trx).selectFrom('plans').innerJoin('customers', 'customers.id', 'plans.id');
  // @ts-expect-error webhooks do not read the outbox (they are handed bus events, or ask EventsOutbox)
  webhookTables(trx).selectFrom('events');
  // @ts-expect-error nor does the outbox read deliveries
  eventTables(trx).selectFrom('webhook_deliveries');
  // @ts-expect-error the portal reads subscriptions through BillingService only
  portalTables(trx).selectFrom('subscriptions');
  const sessions = portalTables(trx).selectFrom('portal_sessions');
  // @ts-expect-error nor joins customers (it asks CustomerService)
  sessions.innerJoin('customers', 'customers.id', 'portal_sessions.customer_id');
  // @ts-expect-error and no module reads portal sessions but the portal
  billingTables(trx).selectFrom('portal_sessions');
  // @ts-expect-error checkout sessions do not read subscriptions (they ask BillingService)
  checkoutTables(trx).selectFrom('subscriptions');
  // @ts-expect-error nor make customers themselves (CustomerService does)
  checkoutTables(trx).insertInto('customers');
  // @ts-expect-error ownTables refuses a table that is not in Database
  ownTables<{ nope: MarketsTable }>(trx);
  // @ts-expect-error and a known table with another row type
  ownTables<{ markets: { id: number } }>(trx);
}

describe('a module touches only its own tables', () => {
  it('cross-module queries are type errors (tsc checks this file)', () => {
    expect(() => crossModuleQueriesDoNotCompile(db)).not.toThrow();
  });

  it('a narrowed executor is the shared one: same object, queries compile to the same SQL', () => {
    const narrowed = catalogTables(db);
    expect(narrowed).toBe(db as unknown);
    expect(narrowed.isTransaction).toBe(false);
    expect(narrowed.selectFrom('markets').select('code').compile().sql).toBe('select "code" from "markets"');
  });

  it('no file under src/ queries through the shared Database executor', () => {
    expect(sharedExecutorQueries()).toEqual([]);
  });
});

/** Methods that name a table: called on a `Kysely<Database>`, `Transaction<Database>` or builder over it. */
const TABLE_NAMING = new Set([
  'selectFrom',
  'insertInto',
  'replaceInto',
  'updateTable',
  'deleteFrom',
  'mergeInto',
  'innerJoin',
  'leftJoin',
  'rightJoin',
  'fullJoin',
]);

/**
 * `file:line method` for every table-naming call under src/ whose receiver is typed over the whole
 * `Database`: every file must query through its owner's narrowed tables (raw `sql` is not seen here).
 */
function sharedExecutorQueries(): string[] {
  const root = join(import.meta.dirname, '..', '..');
  const files = listTs(join(root, 'src'));
  const config = ts.getParsedCommandLineOfConfigFile(
    join(root, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: () => undefined,
    },
  );
  const program = ts.createProgram(files, { ...config!.options, noEmit: true });
  const checker = program.getTypeChecker();
  const overDatabase = (type: ts.Type): boolean =>
    (type.isUnion() ? type.types : [type]).some((t) => {
      const isReference =
        (t.flags & ts.TypeFlags.Object) !== 0 &&
        ((t as ts.ObjectType).objectFlags & ts.ObjectFlags.Reference) !== 0;
      const args = isReference ? checker.getTypeArguments(t as ts.TypeReference) : [];
      return args.some((a) => a.aliasSymbol?.name === 'Database' || a.getSymbol()?.name === 'Database');
    });
  const found: string[] = [];
  for (const file of files) {
    const rel = relative(root, file);
    const source = program.getSourceFile(file)!;
    const visit = (node: ts.Node): void => {
      if (
        ts.isCallExpression(node) &&
        ts.isPropertyAccessExpression(node.expression) &&
        TABLE_NAMING.has(node.expression.name.text) &&
        overDatabase(checker.getTypeAtLocation(node.expression.expression))
      ) {
        const { line } = source.getLineAndCharacterOfPosition(node.getStart());
        found.push(`${rel}:${line + 1} ${node.expression.name.text}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return listTs(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}
