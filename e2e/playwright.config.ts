import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig, devices } from '@playwright/test';

// Browser tests of the web pages against a real server (`node dist/cli/main.js serve`, the build
// `npm start` runs) started from a fresh data directory, driving Debian's Chromium — never a
// downloaded browser. `npm run test:e2e` builds first.
const port = Number(process.env.E2E_PORT ?? 3999);
process.env.E2E_DATA_DIR ??= mkdtempSync(join(tmpdir(), 'reprise-e2e-'));
process.env.E2E_API_KEY ??= `rpk_e2e_${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
export const baseURL = `http://127.0.0.1:${port}`;

const chromium = {
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
};

export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.ts',
  outputDir: '../e2e-artifacts/results',
  // One server, one data directory: the scenarios run in order.
  workers: 1,
  fullyParallel: false,
  timeout: 120_000,
  expect: { timeout: 15_000 },
  retries: 0,
  reporter: [['list'], ['html', { outputFolder: '../e2e-artifacts/report', open: 'never' }]],
  use: {
    baseURL,
    browserName: 'chromium',
    launchOptions: chromium,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    acceptDownloads: true,
  },
  projects: [
    { name: 'desktop', use: { viewport: { width: 1280, height: 900 } } },
    {
      name: 'mobile-375',
      use: {
        ...devices['Pixel 5'],
        viewport: { width: 375, height: 800 },
        browserName: 'chromium',
        launchOptions: chromium,
      },
    },
  ],
  webServer: {
    command: 'node dist/cli/main.js serve',
    cwd: join(import.meta.dirname, '..'),
    url: `${baseURL}/health`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      REPRISE_DATA_DIR: process.env.E2E_DATA_DIR,
      REPRISE_BOOTSTRAP_KEY: process.env.E2E_API_KEY,
      REPRISE_SEED: 'demo',
      // The admin scenario's webhook subscriber listens on loopback.
      REPRISE_WEBHOOK_ALLOW_CIDRS: '127.0.0.1/32',
      LOG_LEVEL: 'warn',
      DATABASE_URL: '',
      NATS_URL: '',
    },
  },
});
