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

const CARD_FRAME = 'iframe[title="Secure card payment input frame"]';

test.describe('hosted checkout', () => {
  test('a decline shows its message, another card succeeds in the same session, and she is entitled', async ({
    page,
    request,
  }, info) => {
    const externalId = unique(info, 'checkout');
    const session = await apiCall<{ id: string; url: string; status: string; expiresAt: string }>(
      request,
      'POST',
      '/v1/checkout-sessions',
      { plan: 'premium-individual-yearly', externalId, market: 'SE' },
    );
    expect(session.status).toBe('open');
    // The URL carries a secret, not just the id.
    expect(session.url).toContain(`/checkout/${session.id}`);
    expect(new URL(session.url).hash.length).toBeGreaterThan(30);

    // Card numbers never reach Reprise's origin: every request to it is watched.
    const toReprise: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).origin === new URL(session.url).origin)
        toReprise.push(`${r.url()} ${r.postData() ?? ''}`);
    });

    await page.goto(session.url);
    await expect(page.getByRole('heading', { level: 1, name: 'Premium Individual' })).toBeVisible();
    await expect(page.getByText('Premium Individual (yearly)')).toBeVisible();
    // 1390 SEK a year, formatted for the market with Intl, tax included.
    await expect(page.getByTestId('price')).toHaveText(
      new Intl.NumberFormat('sv-SE', { style: 'currency', currency: 'SEK' }).format(1390),
    );
    await expect(page.getByText('incl. 25 % VAT')).toBeVisible();

    const card = page.frameLocator(CARD_FRAME);
    await expect(card.getByLabel('Card number')).toBeVisible();
    await expect(page.getByRole('button', { name: 'Subscribe' })).toBeEnabled();
    await expectAccessible(page, 'checkout');
    await expectNoHorizontalScroll(page);
    await snap(page, 'checkout', info);

    await card.getByLabel('Card number').fill('4000 0000 0000 0002');
    await card.getByLabel('Expiry').fill('12 / 34');
    await card.getByLabel('CVC').fill('123');
    await page.getByRole('button', { name: 'Subscribe' }).click();
    const alert = page.getByRole('alert').filter({ hasText: /declined/i });
    await expect(alert).toBeVisible();
    await snap(page, 'checkout-declined', info);

    await card.getByLabel('Card number').fill('4242 4242 4242 4242');
    await page.getByRole('button', { name: 'Subscribe' }).click();
    await page.waitForURL(/\/checkout\/[^/]+\/complete/);
    await expect(page.getByRole('heading', { name: 'Thank you!' })).toBeVisible();
    await expectAccessible(page, 'checkout-complete');
    await snap(page, 'checkout-complete', info);

    const done = await apiCall<{ status: string; customer: string; subscription: string }>(
      request,
      'GET',
      `/v1/checkout-sessions/${session.id}`,
    );
    expect(done.status).toBe('complete');
    const sub = await apiCall<{ status: string }>(request, 'GET', `/v1/subscriptions/${done.subscription}`);
    expect(sub.status).toBe('active');
    await expect
      .poll(
        async () =>
          (await apiCall<{ features: string[] }>(request, 'GET', `/v1/entitlements/${externalId}`)).features,
      )
      .toContain('ad-free');

    for (const line of toReprise) {
      expect(line).not.toMatch(/4242\s?4242|4000\s?0000\s?0000\s?0002/);
    }
    expect(API_KEY).not.toBe('');
  });

  test('an unknown secret shows an unavailable page, not the session', async ({ page, request }, info) => {
    const session = await apiCall<{ id: string; url: string }>(request, 'POST', '/v1/checkout-sessions', {
      plan: 'premium-individual-yearly',
      externalId: unique(info, 'checkout-bad'),
      market: 'SE',
    });
    await page.goto(`${session.url.split('#')[0]}#cs_secret_wrong`);
    await expect(page.getByRole('heading', { name: 'Checkout unavailable' })).toBeVisible();
    await expectAccessible(page, 'checkout-invalid');
  });
});

test.describe('hosted checkout with names an API client chose', () => {
  test('markup stays text and a long unbroken product name wraps on the page', async ({
    page,
    request,
  }, info) => {
    const code = unique(info, 'long').toLowerCase();
    const name = `<img src=x onerror=alert(1)>${'W'.repeat(160)}`;
    await apiCall(request, 'POST', '/v1/products', { code, name, features: ['long'], seats: 1 });
    await apiCall(request, 'POST', '/v1/plans', {
      code,
      name,
      product: code,
      billingPeriod: 'month',
      prices: [{ currency: 'SEK', amount: 9900 }],
    });
    const session = await apiCall<{ url: string }>(request, 'POST', '/v1/checkout-sessions', {
      plan: code,
      externalId: unique(info, 'long-buyer'),
      market: 'SE',
    });
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(session.url);
    await expect(page.getByRole('heading', { level: 1, name })).toBeVisible();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    await expectNoHorizontalScroll(page);
    expect(dialogs).toEqual([]);
  });
});
