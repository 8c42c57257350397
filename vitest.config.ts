import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The crash test kills a server process that shares a PostgreSQL server with the test; the
    // embedded engine lives inside the killed process, so that run has nothing to crash-test.
    exclude: process.env.DATABASE_URL
      ? []
      : [
          'test/reliability/crash.test.ts',
          'test/reliability/crash-billing.test.ts',
          'test/reliability/renewal-resume.test.ts',
          // Several nodes, a NATS server: the production path only.
          'test/events/relay-leadership.test.ts',
          'test/nats/**',
        ],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
