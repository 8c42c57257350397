import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from '@playwright/test';
import {
  API_KEY,
  apiCall,
  expect,
  expectAccessible,
  expectNoHorizontalScroll,
  snap,
  test,
  unique,
} from './support/fixtures';

/** Goes to a console page through the navigation (behind the menu button on narrow screens). */
async function go(page: Page, label: string): Promise<void> {
  const menu = page.getByRole('button', { name: 'Open navigation' });
  if (await menu.isVisible()) await menu.click();
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: label }).click();
  await expect(page.getByRole('heading', { level: 1, name: label })).toBeVisible();
}

/** `minor` of `currency` as the page's own Intl formats it. */
function moneyIn(page: Page, minor: number, currency: string): Promise<string> {
  return page.evaluate(
    ([m, c]) =>
      new Intl.NumberFormat(undefined, { style: 'currency', currency: c as string }).format(
        (m as number) / 100,
      ),
    [minor, currency] as const,
  );
}

/** A webhook subscriber on 127.0.0.1 (the server allows it: REPRISE_WEBHOOK_ALLOW_CIDRS): answers 200, keeps the events. */
async function receiver(): Promise<{
  url: string;
  events: Array<{ id: string; type: string }>;
  close: () => Promise<void>;
}> {
  const events: Array<{ id: string; type: string }> = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      if (body.length < 1_000_000) body += chunk;
    });
    req.on('end', () => {
      try {
        const e = JSON.parse(body) as { id: string; type: string };
        events.push({ id: e.id, type: e.type });
      } catch {
        // not an event: ignored
      }
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    events,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

test.describe('admin console', () => {
  test('an operator signs in, creates a plan, finds the customer, refunds part of a payment, and sees it on the timeline and the dashboard', async ({
    page,
    request,
  }, info) => {
    // A paying SE listener (Premium Individual, yearly), made through the API.
    const externalId = unique(info, 'admin');
    const customer = await apiCall<{ id: string }>(request, 'POST', '/v1/customers', {
      externalId,
      market: 'SE',
    });
    await apiCall(request, 'POST', `/v1/customers/${customer.id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    const sub = await apiCall<{ status: string }>(request, 'POST', '/v1/subscriptions', {
      customer: customer.id,
      plan: 'premium-individual-yearly',
    });
    expect(sub.status).toBe('active');
    const payments = await apiCall<{ data: Array<{ id: string; amount: number; currency: string }> }>(
      request,
      'GET',
      `/v1/payments?customer=${customer.id}`,
    );
    const payment = payments.data[0]!;
    expect(payment.currency).toBe('SEK');
    const before = await apiCall<{ refunded30d: Array<{ currency: string; amount: number }> }>(
      request,
      'GET',
      '/v1/reports/dashboard',
    );
    const refundedBefore = before.refunded30d.find((r) => r.currency === 'SEK')?.amount ?? 0;

    // Sign in: a wrong key is refused with a message, the right one opens the dashboard.
    await page.goto('/admin');
    await expect(page.getByRole('heading', { level: 1, name: 'Reprise admin' })).toBeVisible();
    await expectAccessible(page, 'admin-sign-in');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-sign-in', info);
    await page.getByLabel('API key').fill('rpk_not_a_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toContainText('unknown or revoked');
    await page.getByLabel('API key').fill(API_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();
    // The key is in no browser storage, and the session cookie is HttpOnly and SameSite=Strict.
    const stored = await page.evaluate(
      () => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }),
    );
    expect(stored).not.toContain(API_KEY);
    const cookie = (await page.context().cookies()).find((c) => c.name === 'reprise_admin');
    expect(cookie?.httpOnly).toBe(true);
    expect(cookie?.sameSite).toBe('Strict');
    expect(await page.evaluate(() => document.cookie)).not.toContain('reprise_admin');

    await expect(page.getByRole('figure', { name: 'Active subscriptions by plan and market' })).toBeVisible();
    await expect(page.getByRole('figure', { name: 'MRR per currency' })).toBeVisible();
    await expect(
      page.getByRole('figure', { name: 'New and churned subscriptions, last 30 days' }),
    ).toBeVisible();
    await expect(page.getByRole('heading', { name: 'Dunning queue' })).toBeVisible();
    await expectAccessible(page, 'admin-dashboard');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-dashboard', info);

    // A webhook endpoint for payment events: its signing secret is shown once.
    const hooks = await receiver();
    await go(page, 'Webhooks');
    await page.getByRole('button', { name: 'New endpoint' }).click();
    const newEndpoint = page.getByRole('dialog', { name: 'New webhook endpoint' });
    await newEndpoint.getByLabel('URL').fill(hooks.url);
    await newEndpoint.getByLabel('Event types').fill('payment.*');
    await newEndpoint.getByRole('button', { name: 'Create endpoint' }).click();
    await expect(newEndpoint.getByLabel('Signing secret')).toContainText(/^whsec_/);
    await newEndpoint.getByRole('button', { name: 'Done' }).click();
    await expect(page.getByRole('link', { name: hooks.url })).toBeVisible();
    await expectAccessible(page, 'admin-webhooks');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-webhooks', info);

    // Create a plan: it opens once created.
    await go(page, 'Catalog');
    await expect(page.getByRole('tab', { name: 'Plans' })).toHaveAttribute('aria-selected', 'true');
    await expectAccessible(page, 'admin-catalog');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-catalog', info);
    const planCode = unique(info, 'plan').toLowerCase();
    await page.getByRole('button', { name: 'New plan' }).click();
    const newPlan = page.getByRole('dialog', { name: 'New plan' });
    await newPlan.getByLabel('Code').fill(planCode);
    await newPlan.getByLabel('Name').fill('Premium Individual (e2e)');
    await newPlan.getByRole('combobox', { name: 'Product' }).click();
    await page.getByRole('option', { name: 'Premium Individual (premium-individual)' }).click();
    await newPlan.getByLabel('Currency 1').fill('SEK');
    await newPlan.getByLabel('Amount 1').fill('129.00');
    await expectAccessible(page, 'admin-new-plan');
    await snap(page, 'admin-new-plan', info);
    await newPlan.getByRole('button', { name: 'Create plan' }).click();
    await expect(page.getByRole('heading', { level: 1, name: `Plan ${planCode}` })).toBeVisible();
    await expect(page.getByRole('table', { name: /Price versions/ })).toContainText(
      await moneyIn(page, 12900, 'SEK'),
    );
    await expectAccessible(page, 'admin-plan');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-plan', info);
    const created = await apiCall<{ code: string; billingPeriod: string; prices: Array<{ amount: number }> }>(
      request,
      'GET',
      `/v1/plans/${planCode}`,
    );
    expect(created.billingPeriod).toBe('month');
    expect(created.prices.map((p) => p.amount)).toEqual([12900]);

    // Find the customer by external id, then refund part of the payment after a confirmation.
    await go(page, 'Customers');
    await page.getByLabel('External id').fill(externalId);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: externalId }).click();
    await expect(page.getByRole('heading', { level: 1, name: `Customer ${externalId}` })).toBeVisible();
    await expectAccessible(page, 'admin-customer');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-customer', info);

    await page.getByRole('button', { name: `Refund payment ${payment.id}` }).click();
    const refund = page.getByRole('dialog', { name: 'Refund payment' });
    await refund.getByLabel('Amount to refund (SEK)').fill('25.50');
    await refund.getByRole('button', { name: 'Review refund' }).click();
    await expect(refund).toContainText('This cannot be undone');
    await expect(refund).toContainText(await moneyIn(page, 2550, 'SEK'));
    await expectAccessible(page, 'admin-refund-confirm');
    await snap(page, 'admin-refund-confirm', info);
    await refund.getByRole('button', { name: 'Confirm refund' }).click();
    await expect(refund.getByRole('status')).toContainText('succeeded');
    await refund.getByRole('button', { name: 'Done' }).click();
    await expect(refund).toBeHidden();
    const refunded = await apiCall<{ amountRefunded: number; status: string }>(
      request,
      'GET',
      `/v1/payments/${payment.id}`,
    );
    expect(refunded.amountRefunded).toBe(2550);
    expect(refunded.status).toBe('partially_refunded');

    // On the timeline (newest first) …
    await expect(page.getByTestId('timeline')).toContainText('Refund of 25.50 SEK: succeeded');
    await snap(page, 'admin-customer-after-refund', info);

    // … and on the dashboard (a node reuses its figures for a few seconds: reload until they move).
    await go(page, 'Dashboard');
    const expected = await moneyIn(page, refundedBefore + 2550, 'SEK');
    await expect(async () => {
      await page.reload();
      await expect(page.getByTestId('refunded-30d')).toContainText(expected, { timeout: 2_000 });
    }).toPass({ timeout: 30_000 });

    await page.mouse.move(0, 0);
    await snap(page, 'admin-dashboard-after-refund', info);

    // The refund's payment.refunded event reached the endpoint; redeliver sends it again.
    await go(page, 'Webhooks');
    await page.getByRole('link', { name: hooks.url }).click();
    await expect(page.getByRole('heading', { level: 1, name: 'Webhook endpoint' })).toBeVisible();
    const deliveries = page.getByRole('table', { name: 'Deliveries, newest first' });
    await expect(async () => {
      await page.reload();
      await expect(deliveries.getByRole('row').filter({ hasText: 'payment.refunded' })).toContainText(
        'succeeded',
        {
          timeout: 2_000,
        },
      );
    }).toPass({ timeout: 30_000 });
    const refundedEvent = hooks.events.find((e) => e.type === 'payment.refunded');
    expect(refundedEvent).toBeDefined();
    await expectAccessible(page, 'admin-webhook');
    await snap(page, 'admin-webhook', info);
    await page.getByRole('button', { name: `Redeliver event ${refundedEvent!.id}` }).click();
    await expect(page.getByRole('status').filter({ hasText: 'queued for redelivery' })).toBeVisible();
    await expect
      .poll(() => hooks.events.filter((e) => e.id === refundedEvent!.id).length, { timeout: 30_000 })
      .toBe(2);
    await page.getByRole('button', { name: 'Disable endpoint' }).click();
    await expect(page.getByRole('button', { name: 'Enable endpoint' })).toBeVisible();
    await hooks.close();

    // Test clocks: a clock is created and advanced.
    await go(page, 'Test clocks');
    await page.getByRole('button', { name: 'New test clock' }).click();
    const newClock = page.getByRole('dialog', { name: 'New test clock' });
    await newClock.getByLabel('Name').fill(unique(info, 'clock'));
    await newClock.getByLabel('Frozen time (UTC)').fill('2027-01-15T12:00');
    await newClock.getByRole('button', { name: 'Create test clock' }).click();
    await expect(page.getByRole('heading', { level: 2, name: /2027/ })).toBeVisible();
    await page.getByRole('button', { name: 'Advance clock' }).click();
    await expect(page.getByRole('status').filter({ hasText: 'Advanced to' })).toContainText('jobs ran');
    await expectAccessible(page, 'admin-test-clocks');
    await expectNoHorizontalScroll(page);
    await snap(page, 'admin-test-clocks', info);

    // Sign out ends the session on the server: the cookie no longer authenticates.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(page.getByLabel('API key')).toBeVisible();
    expect((await page.request.get('/v1/admin/sessions/current')).status()).toBe(401);
  });
});
