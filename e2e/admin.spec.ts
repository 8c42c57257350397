import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from '@playwright/test';
import {
  API_KEY,
  apiCall,
  expect,
  expectAccessible,
  expectNoHorizontalScroll,
  payingListener,
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
    const { customer } = await payingListener(request, externalId);
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

test.describe('admin console under stress', () => {
  test('markup and long strings stay text, a stale refund is explained, focus comes back, a lost session or server shows itself', async ({
    page,
    request,
  }, info) => {
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    // Fields an API client chose: markup, and strings with no place to break.
    const externalId = `${'E'.repeat(120)}<img src=x onerror=alert(1)>${unique(info, 'x')}`;
    const { customer } = await payingListener(request, externalId, {
      name: `<img src=x onerror=alert(2)>${'W'.repeat(170)}`,
    });
    const payments = await apiCall<{ data: Array<{ id: string; amount: number }> }>(
      request,
      'GET',
      `/v1/payments?customer=${customer.id}`,
    );
    const payment = payments.data[0]!;
    const clock = await apiCall<{ id: string }>(request, 'POST', '/v1/test-clocks', {
      frozenTime: '2027-03-01T00:00:00Z',
      name: `<b>${'W'.repeat(180)}</b>`,
    });

    // Signing in while the server cannot be reached says so (the button does not spin for ever).
    await page.route('**/v1/admin/sessions', (route) => route.abort());
    await page.goto('/admin');
    await page.getByLabel('API key').fill(API_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toContainText('could not be reached');
    await page.unroute('**/v1/admin/sessions');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();

    // Markup is shown as text; long strings wrap instead of pushing the page sideways.
    await page.goto(`/admin/customers/${customer.id}`);
    await expect(page.getByRole('heading', { level: 1, name: `Customer ${externalId}` })).toBeVisible();
    await expect(page.getByText(`<img src=x onerror=alert(2)>${'W'.repeat(170)}`)).toBeVisible();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    await expectNoHorizontalScroll(page);

    // The refund dialog gives focus back to the button that opened it.
    const refundButton = page.getByRole('button', { name: `Refund payment ${payment.id}` });
    await refundButton.focus();
    await page.keyboard.press('Enter');
    const refund = page.getByRole('dialog', { name: 'Refund payment' });
    await expect(refund).toBeVisible();
    await page.keyboard.press('Escape');
    await expect(refund).toBeHidden();
    await expect(refundButton).toBeFocused();

    // Everything is to be refunded, but all except 10.00 is refunded elsewhere meanwhile: the
    // refusal says what is left, and the corrected amount goes through (not a reused-key error).
    await refundButton.click();
    await refund.getByRole('button', { name: 'Review refund' }).click();
    await apiCall(request, 'POST', '/v1/refunds', { payment: payment.id, amount: payment.amount - 1000 });
    await refund.getByRole('button', { name: 'Confirm refund' }).click();
    await expect(refund.getByRole('alert')).toContainText('another refund was made meanwhile');
    await expect(refund.getByRole('alert')).toContainText(await moneyIn(page, 1000, 'SEK'));
    await expectAccessible(page, 'admin-refund-refused');
    await refund.getByRole('button', { name: 'Back' }).click();
    await refund.getByLabel('Amount to refund (SEK)').fill('10.00');
    await refund.getByRole('button', { name: 'Review refund' }).click();
    await refund.getByRole('button', { name: 'Confirm refund' }).click();
    await expect(refund.getByRole('status')).toContainText('succeeded');
    await refund.getByRole('button', { name: 'Done' }).click();
    // Refunded in full: its button is gone, so focus goes to the page.
    await expect(page.locator('#admin-main')).toBeFocused();
    const after = await apiCall<{ amountRefunded: number }>(request, 'GET', `/v1/payments/${payment.id}`);
    expect(after.amountRefunded).toBe(payment.amount);

    // A test clock named with a long string; an empty frozen time is refused, not a clock in 2000.
    await page.goto(`/admin/test-clocks?clock=${clock.id}`);
    await expect(page.getByRole('heading', { level: 2, name: /^<b>W+<\/b>/ })).toBeVisible();
    await expectNoHorizontalScroll(page);
    const newClock = page.getByRole('button', { name: 'New test clock' });
    await newClock.click();
    const dialog = page.getByRole('dialog', { name: 'New test clock' });
    await dialog.getByLabel('Frozen time (UTC)').fill('');
    await dialog.getByRole('button', { name: 'Create test clock' }).click();
    await expect(dialog.getByRole('alert')).toContainText('Choose the frozen time');
    await page.keyboard.press('Escape');
    await expect(dialog).toBeHidden();
    await expect(newClock).toBeFocused();
    // A hovered row keeps its teal badge and button above 4.5:1.
    await page.getByRole('table', { name: 'Test clocks' }).locator('tbody tr').first().hover();
    await expectAccessible(page, 'admin-test-clocks-hover');

    // The other create dialogs: accessible with the API's refusal shown; focus back on close.
    for (const [path, opener, submit] of [
      ['/admin/catalog?tab=products', 'New product', 'Create product'],
      ['/admin/catalog?tab=markets', 'New market', 'Create market'],
      ['/admin/webhooks', 'New endpoint', 'Create endpoint'],
    ] as const) {
      await page.goto(path);
      const button = page.getByRole('button', { name: opener });
      await button.click();
      const form = page.getByRole('dialog');
      await form.getByRole('button', { name: submit }).click();
      await expect(form.getByRole('alert')).toContainText('Not saved');
      await expectAccessible(page, `admin-${opener}-refused`);
      await page.keyboard.press('Escape');
      await expect(form).toBeHidden();
      await expect(button).toBeFocused();
    }

    // On a phone the closed menu's links are out of the tab order (inert), and picking one from
    // the open menu moves focus to the page, not to a link that slid away.
    if (info.project.name === 'mobile-375') {
      await expect(page.locator('#admin-nav')).toHaveAttribute('inert', '');
      await page.getByRole('button', { name: 'Open navigation' }).click();
      const link = page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Webhooks' });
      await link.focus();
      await page.keyboard.press('Enter');
      await expect(page.getByRole('heading', { level: 1, name: 'Webhooks' })).toBeVisible();
      await expect(page.locator('#admin-main')).toBeFocused();
      await expect(page.locator('#admin-nav')).toHaveAttribute('inert', '');
    }

    // A sign-out the server does not confirm is reported, and the console stays signed in.
    await page.route('**/v1/admin/sessions/current', (route) =>
      route.request().method() === 'DELETE'
        ? route.fulfill({
            status: 503,
            contentType: 'application/problem+json',
            body: JSON.stringify({ status: 503, title: 'Service unavailable', detail: 'Not ready.' }),
          })
        : route.continue(),
    );
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(page.getByRole('alert').filter({ hasText: 'Not signed out' })).toBeVisible();
    await expect(page.getByLabel('API key')).toHaveCount(0);
    await page.unroute('**/v1/admin/sessions/current');

    // The session ends elsewhere (signed out in another tab): the next call shows the sign-in.
    const origin = new URL(page.url()).origin;
    expect((await page.request.delete('/v1/admin/sessions/current', { headers: { origin } })).status()).toBe(
      204,
    );
    const menu = page.getByRole('button', { name: 'Open navigation' });
    if (await menu.isVisible()) await menu.click();
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Customers' }).click();
    await expect(page.getByRole('status').filter({ hasText: 'Your session ended' })).toBeVisible();
    await expect(page.getByLabel('API key')).toBeVisible();
    await expectAccessible(page, 'admin-session-ended');
    expect(dialogs).toEqual([]);
  });
});
