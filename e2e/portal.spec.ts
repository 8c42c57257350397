import { readFileSync } from 'node:fs';
import {
  apiCall,
  expect,
  expectAccessible,
  expectNoHorizontalScroll,
  payingListener,
  snap,
  test,
  unique,
} from './support/fixtures';

test.describe('customer portal', () => {
  test('she previews and makes an upgrade, downloads an invoice PDF, cancels at term end and undoes it', async ({
    page,
    request,
  }, info) => {
    // A paying SE listener on Premium Individual (yearly), made through the API.
    const externalId = unique(info, 'portal');
    const { customer, subscription: sub } = await payingListener(request, externalId);
    const session = await apiCall<{ url: string }>(request, 'POST', '/v1/portal-sessions', {
      customer: customer.id,
    });
    expect(new URL(session.url).hash.length).toBeGreaterThan(30);

    await page.goto(session.url);
    await expect(page.getByRole('heading', { level: 1, name: 'Your subscription' })).toBeVisible();
    await expect(page.getByRole('heading', { name: 'Premium Individual (yearly)' })).toBeVisible();
    await expect(page.getByText(/Next renewal on/)).toBeVisible();
    // The invoices have loaded: their PDF button and status fit the screen (375 px too).
    const pdfButton = page.getByRole('button', { name: /Download PDF/ }).first();
    await expect(pdfButton).toBeVisible();
    const box = await pdfButton.boundingBox();
    const width = page.viewportSize()?.width ?? 0;
    expect(box && box.x + box.width, 'PDF button right edge').toBeLessThanOrEqual(width);
    await expect(page.getByRole('table', { name: /Your invoices/ })).toContainText('paid');
    await expectAccessible(page, 'portal');
    await expectNoHorizontalScroll(page);
    await snap(page, 'portal', info);

    // Upgrade: the preview shows what the change bills before confirming.
    await page.getByRole('button', { name: 'Change plan' }).click();
    const dialog = page.getByRole('dialog', { name: 'Change plan' });
    await dialog.getByRole('radio', { name: /Premium Duo \(yearly\)/ }).check();
    await expect(dialog.getByTestId('change-preview')).toContainText('Due today');
    await expectAccessible(page, 'portal-change-preview');
    await snap(page, 'portal-change-preview', info);
    await dialog.getByRole('button', { name: 'Confirm change' }).click();
    await expect(dialog).toBeHidden();
    await expect(page.getByRole('heading', { name: 'Premium Duo (yearly)' })).toBeVisible();
    const after = await apiCall<{ plan: string }>(request, 'GET', `/v1/subscriptions/${sub.id}`);
    const duo = await apiCall<{ id: string }>(request, 'GET', '/v1/plans/premium-duo-yearly');
    expect(after.plan).toBe(duo.id);

    // An invoice PDF.
    const downloading = page.waitForEvent('download');
    await page
      .getByRole('button', { name: /Download PDF/ })
      .first()
      .click();
    const download = await downloading;
    expect(download.suggestedFilename()).toMatch(/^SE-\d{4}-\d{6}\.pdf$/);
    const pdf = readFileSync((await download.path())!);
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');

    // Cancel at the term end, with the date access ends, then undo.
    await page.getByRole('button', { name: 'Cancel subscription' }).click();
    const cancel = page.getByRole('dialog', { name: 'Cancel subscription' });
    await expect(cancel).toContainText('You keep access until');
    await snap(page, 'portal-cancel', info);
    await cancel.getByRole('button', { name: 'Confirm cancellation' }).click();
    await expect(page.getByText(/Your access ends on/)).toBeVisible();
    expect(
      (await apiCall<{ cancelAt: string | null }>(request, 'GET', `/v1/subscriptions/${sub.id}`)).cancelAt,
    ).not.toBeNull();
    await page.getByRole('button', { name: 'Undo cancellation' }).click();
    await expect(page.getByText(/Next renewal on/)).toBeVisible();
    expect(
      (await apiCall<{ cancelAt: string | null }>(request, 'GET', `/v1/subscriptions/${sub.id}`)).cancelAt,
    ).toBeNull();
    await expectAccessible(page, 'portal-after');
  });
});
