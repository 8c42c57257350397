import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Config } from './config.js';
import type { MasterKey } from './crypto/envelope.js';
import { KeyStore } from './crypto/key-store.js';
import { loadMasterKey } from './crypto/master-key.js';
import { type DatabaseHandle, openDatabase } from './db/engine.js';
import { migrate } from './db/migrate.js';
import type { Db } from './db/schema.js';
import { type EventBus, MemoryBus } from './events/bus.js';
import { NatsBus } from './events/nats-bus.js';
import { EventsOutbox } from './events/outbox.js';
import { AdvisoryLockLeadership, OutboxRelay, soleLeader } from './events/relay.js';
import { eventRoutes } from './events/routes.js';
import { AdminCookie } from './http/admin-cookie.js';
import { PageSessionAuth } from './http/auth.js';
import { IdempotencyStore } from './http/idempotency.js';
import { PublicOrigin } from './http/public-origin.js';
import { buildServer } from './http/server.js';
import { UnitOfWork } from './http/unit-of-work.js';
import { installWeb } from './http/web.js';
import { JobScheduler } from './jobs/scheduler.js';
import { type Clock, systemClock } from './kernel/clock.js';
import { apiKeyRoutes } from './modules/api-keys/routes.js';
import { ApiKeyService } from './modules/api-keys/service.js';
import { adminSessionRoutes } from './modules/api-keys/session-routes.js';
import { AdminSessionService } from './modules/api-keys/sessions.js';
import { auditRoutes } from './modules/audit/routes.js';
import { AuditService } from './modules/audit/service.js';
import { billingRoutes } from './modules/billing/routes.js';
import { BillingService } from './modules/billing/service.js';
import { catalogRoutes } from './modules/catalog/routes.js';
import { CatalogService } from './modules/catalog/service.js';
import { checkoutRoutes } from './modules/checkout/routes.js';
import { CheckoutService } from './modules/checkout/service.js';
import { moveDataKeysToKeyStore } from './modules/customers/key-move.js';
import { customerRoutes } from './modules/customers/routes.js';
import { CustomerService } from './modules/customers/service.js';
import { EntitlementProjection } from './modules/entitlements/projection.js';
import { entitlementRoutes } from './modules/entitlements/routes.js';
import { EntitlementService } from './modules/entitlements/service.js';
import { ledgerRoutes } from './modules/ledger/routes.js';
import { LedgerService } from './modules/ledger/service.js';
import { paymentRoutes } from './modules/payments/routes.js';
import { PaymentService } from './modules/payments/service.js';
import { portalRoutes } from './modules/portal/routes.js';
import { PortalService } from './modules/portal/service.js';
import { reportRoutes } from './modules/reports/routes.js';
import { ReportsService } from './modules/reports/service.js';
import { testClockRoutes } from './modules/test-clocks/routes.js';
import { TestClockService } from './modules/test-clocks/service.js';
import { WebhookDispatcher } from './modules/webhooks/dispatcher.js';
import { parseAllowCidrs } from './modules/webhooks/domain/ssrf.js';
import { webhookRoutes } from './modules/webhooks/routes.js';
import { WebhookService } from './modules/webhooks/service.js';
import { type Providers, setupProviders } from './providers/setup.js';

/** Every service of one running platform, wired once: the composition root. */
export interface Services {
  db: Db;
  clock: Clock;
  apiKeys: ApiKeyService;
  /** Admin console sessions (ADR 0022). */
  adminSessions: AdminSessionService;
  audit: AuditService;
  idempotency: IdempotencyStore;
  uow: UnitOfWork;
  jobs: JobScheduler;
  catalog: CatalogService;
  customers: CustomerService;
  testClocks: TestClockService;
  ledger: LedgerService;
  payments: PaymentService;
  events: EventsOutbox;
  billing: BillingService;
  entitlements: EntitlementService;
  /** The entitlement hot path: this node's in-memory projection (ADR 0018). */
  entitlementProjection: EntitlementProjection;
  /** In-process, or NATS JetStream with NATS_URL (ADR 0018). */
  bus: EventBus;
  /** Publishes the outbox to the bus (one node leads). */
  relay: OutboxRelay;
  /** Webhook endpoints and deliveries (ADR 0019). */
  webhooks: WebhookService;
  /** The admin console's dashboard and customer timeline (ADR 0022): composed from the owners' services. */
  reports: ReportsService;
  providers: Providers;
  /** The origin hosted pages are served on, and where they may redirect to. */
  publicOrigin: PublicOrigin;
  /** Hosted pages' session verifiers (checkout, portal), registered by their modules. */
  pageSessions: PageSessionAuth;
  /** Customer portal sessions (ADR 0024). */
  portal: PortalService;
  /** Hosted checkout sessions (ADR 0023). */
  checkout: CheckoutService;
}

export function createServices(
  db: Db,
  config: Config,
  clock: Clock,
  masterKey: MasterKey,
  providers: Providers,
  keyStore: KeyStore,
  engine: 'pglite' | 'postgres',
  log: (error: unknown, where: string) => void = () => undefined,
): Services {
  const apiKeys = new ApiKeyService(db, clock, config.bootstrapKey);
  const adminSessions = new AdminSessionService(db, clock, config.bootstrapKey);
  const audit = new AuditService(db, clock);
  const idempotency = new IdempotencyStore(
    db,
    clock,
    config.idempotencyRetentionHours,
    config.idempotencyLeaseMs,
    // Stored responses hold no personal data; a replay reads it from the customer.
    (ref) => customers.personal(ref.customerId),
    masterKey.derive('idempotency-request-hash'),
  );
  const uow = new UnitOfWork(db, idempotency, audit);
  const jobs = new JobScheduler(db, clock);
  const catalog = new CatalogService(db, clock);
  const testClocks = new TestClockService(db, clock, jobs, { leaseMs: config.testClockLeaseMs });
  const customers = new CustomerService(db, clock, masterKey, keyStore, catalog, testClocks);
  const ledger = new LedgerService(db, clock);
  const events = new EventsOutbox(db, clock, { retentionDays: config.eventRetentionDays });
  const payments = new PaymentService(db, clock, customers, catalog, ledger, providers.router, jobs, events);
  const billing = new BillingService(db, jobs, customers, catalog, ledger, payments, events, {
    retryDays: config.dunningRetryDays,
    clock,
    numberBlock: config.invoiceNumberBlock,
    renewalBatch: config.renewalBatch,
    renewalConcurrency: config.renewalConcurrency,
    renewalLeaseMs: config.renewalLeaseMs,
  });
  const entitlements = new EntitlementService(billing, customers, catalog);
  const entitlementProjection = new EntitlementProjection(
    { billing, customers, catalog, clock, uncached: (x) => entitlements.forExternalId(x) },
    { maxEntries: config.entitlementCacheSize, ttlMs: config.entitlementCacheTtlMs },
  );
  const bus: EventBus = config.natsUrl
    ? new NatsBus({
        url: config.natsUrl,
        prefix: config.natsPrefix,
        replicas: config.natsReplicas,
        retentionDays: config.eventRetentionDays,
        name: `reprise-${process.pid}`,
        onError: log,
        // Only this deployment's nodes publish events (a forged one would be signed to webhooks).
        signingKey: masterKey.derive('bus-signing'),
      })
    : new MemoryBus();
  const relay = new OutboxRelay(db, events, bus, clock, {
    leadership:
      engine === 'postgres' && config.databaseUrl
        ? new AdvisoryLockLeadership(config.databaseUrl, 'bus')
        : soleLeader,
    // The embedded default is one node: its own commits wake the relay; the poll is a fallback.
    pollMs: engine === 'postgres' ? 100 : 500,
    onError: (error) => log(error, 'relay'),
  });
  const webhooks = new WebhookService(db, clock, events, masterKey.derive('webhook-secrets'), {
    allowCidrs: parseAllowCidrs(config.webhookAllowCidrs),
  });
  const publicOrigin = new PublicOrigin(config.publicUrl, config.allowedRedirectOrigins);
  const reports = new ReportsService(
    db,
    clock,
    { billing, payments, customers, catalog, ledger, events, audit },
    { cacheMs: config.dashboardCacheMs },
  );
  const pageSessions = new PageSessionAuth();
  const portal = new PortalService(db, clock, customers);
  // The portal page's secret authenticates its routes, for the session its `:id` names.
  pageSessions.register('portal', (secret, request) =>
    portal.authenticate(secret, (request.params as { id?: unknown } | undefined)?.id),
  );
  const checkout = new CheckoutService(db, clock, {
    customers,
    catalog,
    billing,
    payments,
    router: providers.router,
    publicOrigin,
    audit,
    events,
  });
  return {
    checkout,
    publicOrigin,
    pageSessions,
    portal,
    db,
    clock,
    apiKeys,
    adminSessions,
    audit,
    idempotency,
    uow,
    jobs,
    catalog,
    customers,
    testClocks,
    ledger,
    payments,
    events,
    billing,
    entitlements,
    entitlementProjection,
    bus,
    relay,
    webhooks,
    reports,
    providers,
  };
}

export interface App {
  server: FastifyInstance;
  services: Services;
  database: DatabaseHandle;
  keyStore: KeyStore;
  masterKeySource: string;
  /** Stops background work, drains requests, closes the database (unless it was given). */
  close(): Promise<void>;
}

export interface AppOptions {
  config: Config;
  clock?: Clock;
  /** An already open database (tests); otherwise opened from the config. */
  database?: DatabaseHandle;
  /** An already open key store (tests); otherwise opened from the config. */
  keyStore?: KeyStore;
  logger?: FastifyServerOptions['logger'];
  /** Poll wall-clock jobs and prune idempotency keys in the background (servers, not tests). */
  background?: boolean;
}

const PRUNE_INTERVAL_MS = 60 * 60_000;

export async function createApp(options: AppOptions): Promise<App> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const database =
    options.database ??
    (await openDatabase({
      databaseUrl: config.databaseUrl,
      dataDir: `${config.dataDir}/pgdata`,
      poolMax: config.poolMax,
    }));
  const keyStore =
    options.keyStore ??
    (await KeyStore.open({ url: config.keystoreUrl, dataDir: `${config.dataDir}/keystore` }));
  let ready = false;
  const { key: masterKey, source: masterKeySource } = loadMasterKey(config.masterKey, config.dataDir);
  // Keys an older version kept in the data database move out before migration 0014 drops them.
  await moveDataKeysToKeyStore(database.db, keyStore, masterKey.id);
  await migrate(database.db);
  const providers = await setupProviders(config, clock);
  let logError: (error: unknown, where: string) => void = () => undefined;
  const services = createServices(
    database.db,
    config,
    clock,
    masterKey,
    providers,
    keyStore,
    database.kind,
    (error, where) => logError(error, where),
  );
  const projection = services.entitlementProjection;
  const offCommitted = services.events.onCommitted((events) => projection.committedHere(events));
  const projectionFeed = await services.bus.subscribe((events) => projection.apply(events), {
    types: ['entitlement.updated'],
    onReset: () => projection.clear(),
  });
  // The console cookie: Secure and `__Host-` named when REPRISE_PUBLIC_URL is https (ADR 0022).
  const adminCookie = new AdminCookie(services.publicOrigin);
  const server = await buildServer(
    {
      db: database.db,
      apiKeys: services.apiKeys,
      adminSessions: services.adminSessions,
      idempotency: services.idempotency,
      audit: services.audit,
      poolStats: database.poolStats,
      engine: database.kind,
      isReady: () => ready,
      pageSessions: services.pageSessions,
      adminCookie,
      registerMetrics: (registry) => {
        providers.router.registerMetrics(registry);
        services.jobs.registerMetrics(registry);
        services.relay.registerMetrics(registry);
        projection.registerMetrics(registry);
      },
    },
    {
      logger: options.logger ?? false,
      bodyLimitBytes: config.bodyLimitBytes,
      rateLimitPerMinute: config.rateLimitPerMinute,
      authFailuresPerMinute: config.authFailuresPerMinute,
      requestTimeoutMs: config.requestTimeoutMs,
      trustProxy: config.trustProxy,
    },
  );
  const uow = services.uow;
  apiKeyRoutes(server, { apiKeys: services.apiKeys, uow });
  adminSessionRoutes(server, {
    apiKeys: services.apiKeys,
    sessions: services.adminSessions,
    uow,
    cookie: adminCookie,
  });
  auditRoutes(server, { audit: services.audit });
  catalogRoutes(server, { catalog: services.catalog, uow, now: () => clock.now() });
  customerRoutes(server, {
    customers: services.customers,
    catalog: services.catalog,
    uow,
    idempotency: services.idempotency,
  });
  testClockRoutes(server, { testClocks: services.testClocks, uow });
  ledgerRoutes(server, { ledger: services.ledger });
  paymentRoutes(server, { payments: services.payments, uow });
  eventRoutes(server, { events: services.events });
  billingRoutes(server, { billing: services.billing, payments: services.payments, uow });
  entitlementRoutes(server, { projection });
  webhookRoutes(server, { webhooks: services.webhooks, events: services.events, uow });
  portalRoutes(server, {
    portal: services.portal,
    billing: services.billing,
    payments: services.payments,
    customers: services.customers,
    catalog: services.catalog,
    router: providers.router,
    publicOrigin: services.publicOrigin,
    uow,
  });
  // The web pages (checkout, portal, admin console), and the card frames they may embed.
  const frameOrigins = config.simulators
    ? config.simulators.split(',').map((pair) => new URL(pair.split('=', 2)[1]!.trim()).origin)
    : providers.embedded.map((e) => new URL(e.url).origin);
  await installWeb(server, { frameSources: () => frameOrigins });
  reportRoutes(server, { reports: services.reports, catalog: services.catalog });
  checkoutRoutes(server, {
    checkout: services.checkout,
    billing: services.billing,
    payments: services.payments,
    uow,
    pageSessions: services.pageSessions,
  });
  // The card frame may be embedded by the hosted pages' origin only, read as it is at each request
  // (REPRISE_PUBLIC_URL, else the address the server listens on once it does).
  providers.setPageOrigin(() => services.publicOrigin.origin);
  await server.ready();
  logError = (error, where) => server.log.warn({ err: error }, `events: ${where}`);
  // Webhook fan-out: a shared durable consumer of the bus (each event to one node, at least once).
  const webhookFeed = await services.bus.consumeShared('webhooks', (events) =>
    services.webhooks.fanOut(events),
  );
  const webhookDispatcher = new WebhookDispatcher(services.webhooks, {
    concurrency: config.webhookConcurrency,
    timeoutMs: config.webhookTimeoutMs,
    log: (message, err) => server.log.warn({ err }, message),
  });

  let pruneTimer: NodeJS.Timeout | undefined;
  if (options.background) {
    services.jobs.start();
    services.relay.start();
    webhookDispatcher.start();
    pruneTimer = setInterval(() => {
      services.idempotency
        .prune()
        .catch((err: unknown) => server.log.warn({ err }, 'idempotency prune failed'));
      // Only what the relay has published may go.
      services.relay
        .storedPosition()
        .then((keepAfter) => services.events.prune({ keepAfter }))
        .catch((err: unknown) => server.log.warn({ err }, 'events prune failed'));
      services.webhooks
        .prune({ retentionMs: config.eventRetentionDays * 86_400_000 })
        .catch((err: unknown) => server.log.warn({ err }, 'webhooks prune failed'));
      services.payments
        .pruneProviderEvents()
        .catch((err: unknown) => server.log.warn({ err }, 'provider events prune failed'));
      services.adminSessions
        .prune()
        .catch((err: unknown) => server.log.warn({ err }, 'admin sessions prune failed'));
      services.portal
        .prune()
        .catch((err: unknown) => server.log.warn({ err }, 'portal sessions prune failed'));
      services.checkout
        .prune()
        .catch((err: unknown) => server.log.warn({ err }, 'checkout sessions prune failed'));
      services.customers
        .sweepOrphanKeys()
        .catch((err: unknown) => server.log.warn({ err }, 'key store sweep failed'));
    }, PRUNE_INTERVAL_MS);
    pruneTimer.unref();
  }
  ready = true;

  return {
    server,
    services,
    database,
    keyStore,
    masterKeySource,
    async close() {
      ready = false;
      if (pruneTimer) clearInterval(pruneTimer);
      await services.jobs.stop();
      await webhookDispatcher.stop();
      await services.relay.stop();
      offCommitted();
      await projectionFeed.close();
      await webhookFeed.close();
      await services.bus.close();
      await server.close();
      await providers.close();
      // Unused invoice numbers go back to the pool at once (else when their lease lapses).
      await services.billing.numbers.release().catch(() => undefined);
      if (!options.database) await database.close();
      if (!options.keyStore) await keyStore.close();
    },
  };
}
