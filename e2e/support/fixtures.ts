import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  type APIRequestContext,
  test as base,
  expect,
  type Frame,
  type Page,
  type TestInfo,
} from '@playwright/test';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const SCREENSHOTS = join(import.meta.dirname, '..', '..', 'e2e-artifacts', 'screenshots');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown; failureSummary?: string }>;
}

async function axeIn(target: Page | Frame): Promise<AxeViolation[]> {
  // evaluate runs through the DevTools protocol, so the page's CSP (script-src 'self') stays on.
  await target.evaluate(AXE_SOURCE);
  return target.evaluate(async () => {
    // biome-ignore lint/suspicious/noExplicitAny: axe is the global the script above defined.
    const axe = (window as any).axe;
    const result = await axe.run(document, { iframes: false, resultTypes: ['violations'] });
    return result.violations as AxeViolation[];
  });
}

/**
 * No serious or critical axe-core violation on the page, nor in any of its frames (the card
 * frame is the provider's page, checked on its own).
 */
export async function expectAccessible(page: Page, name: string): Promise<void> {
  const found: string[] = [];
  for (const frame of page.frames()) {
    if (frame.url() === 'about:blank') continue;
    const violations = await axeIn(frame === page.mainFrame() ? page : frame);
    for (const v of violations) {
      if (v.impact === 'serious' || v.impact === 'critical') {
        found.push(
          `${v.impact} ${v.id} (${v.help}) in ${frame.url()}: ${v.nodes
            .slice(0, 3)
            .map((n) => JSON.stringify(n.target))
            .join(', ')}`,
        );
      }
    }
  }
  expect(found, `axe-core on ${name}`).toEqual([]);
}

/** A full-page screenshot kept as a test artifact (e2e-artifacts/screenshots/<project>-<name>.png). */
export async function snap(page: Page, name: string, info: TestInfo): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${info.project.name}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await info.attach(name, { path, contentType: 'image/png' });
}

/** The page's layout fits the viewport: nothing scrolls sideways (375 px phones included). */
export async function expectNoHorizontalScroll(page: Page): Promise<void> {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, 'horizontal overflow in px').toBeLessThanOrEqual(1);
}

export const API_KEY = process.env.E2E_API_KEY ?? '';

/** Calls the API with the bootstrap key; answers the parsed body, failing the test on an error. */
export async function apiCall<T = Record<string, unknown>>(
  request: APIRequestContext,
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  body?: unknown,
  expected = [200, 201],
): Promise<T> {
  const res = await request.fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${API_KEY}`,
      ...(method === 'GET' ? {} : { 'idempotency-key': crypto.randomUUID() }),
    },
    ...(body === undefined ? {} : { data: body }),
  });
  const text = await res.text();
  expect(expected, `${method} ${url} → ${res.status()} ${text.slice(0, 500)}`).toContain(res.status());
  return (text ? JSON.parse(text) : {}) as T;
}

/**
 * A paying SE listener made through the API: the customer (with `extra` fields such as a name),
 * a simulator card, and an active Premium Individual (yearly) subscription.
 */
export async function payingListener(
  request: APIRequestContext,
  externalId: string,
  extra: Record<string, unknown> = {},
): Promise<{ customer: { id: string }; subscription: { id: string; status: string } }> {
  const customer = await apiCall<{ id: string }>(request, 'POST', '/v1/customers', {
    externalId,
    market: 'SE',
    ...extra,
  });
  await apiCall(request, 'POST', `/v1/customers/${customer.id}/payment-methods`, {
    provider: 'simulator',
    token: 'tok_visa',
  });
  const subscription = await apiCall<{ id: string; status: string }>(request, 'POST', '/v1/subscriptions', {
    customer: customer.id,
    plan: 'premium-individual-yearly',
  });
  expect(subscription.status).toBe('active');
  return { customer, subscription };
}

/** A unique suffix per project and run, so both viewports' scenarios use their own customers. */
export function unique(info: TestInfo, prefix: string): string {
  return `${prefix}-${info.project.name}-${Date.now().toString(36)}`;
}

export const test = base;
export { expect };
