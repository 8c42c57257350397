import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimulator } from '../../src/providers/simulator/server.js';
import { luhnValid, TEST_NUMBERS, tokenizeCard } from '../../src/providers/simulator/tokens.js';

const API_KEY = 'sk_test_card_frame_0123456789';
const PARENT = 'https://shop.example';
const year = new Date().getUTCFullYear() + 2;

/**
 * The simulator's card frame and tokenization, as a browser calls them: no API key, on the
 * simulator's own origin. Card numbers go in here and only tokens come out.
 */
describe('the simulator card frame and POST /v1/tokens', () => {
  let app: FastifyInstance;

  beforeAll(async () => {
    ({ app } = await buildSimulator({
      apiKey: API_KEY,
      webhookSecret: 'whsec_test_card_frame_0123456789',
      pageOrigins: [PARENT],
      tokensPerMinute: 1_000,
    }));
  });
  afterAll(() => app.close());

  const tokens = (card: Record<string, unknown>, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/tokens', payload: { card }, headers });
  const frame = (query: string) => app.inject({ method: 'GET', url: `/elements/card${query}` });

  describe('tokens', () => {
    it("maps Stripe's test numbers (spaces allowed) to the simulator's test tokens", async () => {
      const expected: Array<[string, string, string, string]> = [
        ['4242 4242 4242 4242', 'tok_visa', 'visa', '4242'],
        ['5555 5555 5555 4444', 'tok_mastercard', 'mastercard', '4444'],
        ['3782 822463 10005', 'tok_amex', 'amex', '0005'],
        ['4000 0000 0000 0002', 'tok_chargeDeclined', 'visa', '0002'],
        ['4000 0000 0000 9995', 'tok_chargeDeclinedInsufficientFunds', 'visa', '9995'],
        ['4000 0000 0000 0069', 'tok_chargeDeclinedExpiredCard', 'visa', '0069'],
        ['4000 0000 0000 0127', 'tok_chargeDeclinedIncorrectCvc', 'visa', '0127'],
        ['4000 0000 0000 0341', 'tok_chargeCustomerFail', 'visa', '0341'],
        ['4000 0000 0000 0119', 'tok_processingError', 'visa', '0119'],
      ];
      expect(expected).toHaveLength(Object.keys(TEST_NUMBERS).length);
      for (const [number, token, brand, last4] of expected) {
        const res = await tokens({
          number,
          expMonth: 12,
          expYear: year,
          cvc: brand === 'amex' ? '1234' : '123',
        });
        expect(res.statusCode, number).toBe(200);
        expect(res.json()).toEqual({
          id: token,
          object: 'token',
          card: { brand, last4, expMonth: 12, expYear: year },
        });
        expect(res.body).not.toContain(number.replace(/ /g, ''));
      }
      // Two-digit years and digit strings, as a form sends them.
      const short = await tokens({
        number: '4242424242424242',
        expMonth: '07',
        expYear: String(year % 100),
        cvc: '999',
      });
      expect(short.statusCode).toBe(200);
      expect(short.json().card).toMatchObject({ expMonth: 7, expYear: year });
    });

    it('refuses a bad number, a past expiry, a bad CVC and a non-test card with 402 naming the field', async () => {
      const cases: Array<[Record<string, unknown>, number, string, string, string]> = [
        [
          { number: '4242 4242 4242 4241' },
          402,
          'incorrect_number',
          'number',
          'Your card number is incorrect.',
        ],
        [{ number: '4242' }, 402, 'invalid_number', 'number', 'Your card number is invalid.'],
        [{ number: '4242-4242-4242-4242' }, 402, 'invalid_number', 'number', 'Your card number is invalid.'],
        [
          { number: '4111 1111 1111 1111' },
          402,
          'card_declined',
          'number',
          'Your card was declined. Your request was in test mode, but used a non test card.',
        ],
        [{ expMonth: 13 }, 402, 'invalid_expiry_month', 'expiry', "Your card's expiration month is invalid."],
        [
          { expMonth: 1, expYear: 2020 },
          402,
          'invalid_expiry_year',
          'expiry',
          "Your card's expiration date is in the past.",
        ],
        [{ expYear: 'ab' }, 402, 'invalid_expiry_year', 'expiry', "Your card's expiration year is invalid."],
        [{ cvc: '12' }, 402, 'invalid_cvc', 'cvc', "Your card's security code is invalid."],
        [{ cvc: '1234' }, 402, 'invalid_cvc', 'cvc', "Your card's security code is invalid."],
        [
          { number: '378282246310005', cvc: '123' },
          402,
          'invalid_cvc',
          'cvc',
          "Your card's security code is invalid.",
        ],
      ];
      for (const [override, status, code, field, message] of cases) {
        const res = await tokens({
          number: '4242424242424242',
          expMonth: 12,
          expYear: year,
          cvc: '123',
          ...override,
        });
        expect(res.statusCode, JSON.stringify(override)).toBe(status);
        expect(res.json().error).toEqual({ type: 'card_error', code, message, field });
      }
      // The current month is still valid; the last one is not.
      const now = new Date();
      const thisMonth = await tokens({
        number: '4242424242424242',
        expMonth: now.getUTCMonth() + 1,
        expYear: now.getUTCFullYear(),
        cvc: '123',
      });
      expect(thisMonth.statusCode).toBe(200);
    });

    it('400 for input that is no card, 413 over the body limit; needs no API key, as a browser calls it', async () => {
      for (const card of [
        {},
        { number: 4242424242424242, expMonth: 12, expYear: year, cvc: '123' },
        { number: '4242424242424242', expMonth: 12.5, expYear: year, cvc: '123' },
        { number: '4242424242424242', expMonth: 12, expYear: year },
        { number: 'x'.repeat(40), expMonth: 12, expYear: year, cvc: '123' },
      ]) {
        const res = await tokens(card);
        expect(res.statusCode, JSON.stringify(card)).toBe(400);
        expect(res.json().error.type).toBe('invalid_request_error');
      }
      const big = await app.inject({
        method: 'POST',
        url: '/v1/tokens',
        payload: { card: { number: '4242424242424242' }, pad: 'x'.repeat(4_000) },
      });
      expect(big.statusCode).toBe(413);
      // The payment API keeps needing the key.
      const charge = await app.inject({
        method: 'POST',
        url: '/v1/payment_methods',
        payload: { token: 'tok_visa' },
      });
      expect(charge.statusCode).toBe(401);
    });

    it('is rate limited per address (loosely)', async () => {
      const { app: tight } = await buildSimulator({
        apiKey: API_KEY,
        webhookSecret: 'whsec_test_card_frame_0123456789',
        tokensPerMinute: 3,
      });
      try {
        const card = { number: '4242424242424242', expMonth: 12, expYear: year, cvc: '123' };
        const statuses: number[] = [];
        for (let i = 0; i < 4; i++) {
          statuses.push(
            (await tight.inject({ method: 'POST', url: '/v1/tokens', payload: { card } })).statusCode,
          );
        }
        expect(statuses).toEqual([200, 200, 200, 429]);
      } finally {
        await tight.close();
      }
    });

    it('the rules agree with Luhn and the test table', () => {
      for (const number of Object.keys(TEST_NUMBERS)) expect(luhnValid(number), number).toBe(true);
      expect(luhnValid('4242424242424241')).toBe(false);
      const at = new Date('2030-06-15T00:00:00Z');
      const ok = { number: '4242424242424242', cvc: '123' };
      expect(tokenizeCard({ ...ok, expMonth: 6, expYear: 2030 }, at).ok).toBe(true);
      expect(tokenizeCard({ ...ok, expMonth: 5, expYear: 2030 }, at)).toMatchObject({
        ok: false,
        field: 'expiry',
      });
      expect(tokenizeCard({ ...ok, expMonth: 1, expYear: 2081 }, at)).toMatchObject({
        ok: false,
        field: 'expiry',
      });
    });
  });

  describe('the frame', () => {
    it('serves a self-contained page framed only by the parent origin, under a strict CSP', async () => {
      const res = await frame(`?parentOrigin=${encodeURIComponent(PARENT)}&locale=sv-SE`);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      const csp = String(res.headers['content-security-policy']);
      const directives = new Map(
        csp.split(';').map((d) => {
          const [name, ...values] = d.trim().split(/\s+/);
          return [name!, values];
        }),
      );
      expect(directives.get('frame-ancestors')).toEqual([PARENT]);
      expect(directives.get('default-src')).toEqual(["'none'"]);
      expect(directives.get('connect-src')).toEqual(["'self'"]);
      expect(directives.get('form-action')).toEqual(["'none'"]);
      // Inline script and style are allowed by their hashes only: exactly the ones in the page.
      const html = res.body;
      const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
      const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
      const hash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
      expect(directives.get('script-src')).toEqual([hash(script)]);
      expect(directives.get('style-src')).toEqual([hash(style)]);
      expect(html).not.toMatch(/<script[^>]+src=|<link|\sstyle="|\son[a-z]+="/);
      expect(html).toContain(`data-parent-origin="${PARENT}"`);
      // Posts to the parent origin only, and takes messages from it only.
      expect(script).toContain('window.parent.postMessage(message, parentOrigin)');
      expect(script).toContain('event.origin !== parentOrigin || event.source !== window.parent');
      for (const type of ['ready', 'resize', 'token', 'error', 'tokenize']) {
        expect(script).toContain(`'reprise-card:${type}'`);
      }
      expect(html).toMatch(/background:transparent/);
      expect(html).toMatch(/<meta name="viewport" content="width=device-width, initial-scale=1">/);
    });

    it('labels its three fields for assistive technology and autofill', async () => {
      const html = (await frame(`?parentOrigin=${encodeURIComponent(PARENT)}`)).body;
      const labels = [...html.matchAll(/<label for="([^"]+)">([^<]+)<\/label>/g)].map((m) => [m[1], m[2]]);
      expect(labels).toEqual([
        ['number', 'Card number'],
        ['expiry', 'Expiry'],
        ['cvc', 'CVC'],
      ]);
      const inputs = [...html.matchAll(/<input ([^>]+)>/g)].map((m) =>
        Object.fromEntries([...m[1]!.matchAll(/([a-z-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]])),
      );
      expect(inputs.map((i) => [i.id, i.autocomplete, i.inputmode])).toEqual([
        ['number', 'cc-number', 'numeric'],
        ['expiry', 'cc-exp', 'numeric'],
        ['cvc', 'cc-csc', 'numeric'],
      ]);
      expect(inputs.find((i) => i.id === 'expiry')?.placeholder).toBe('MM / YY');
      for (const input of inputs) {
        // Each field's error is inline, announced, and describes its field.
        expect(html).toContain(`<p id="${input['aria-describedby']}" class="error" role="alert"></p>`);
      }
      expect(html).toMatch(/<html lang="en">/);
    });

    it('refuses a parent origin it was not told about, or no origin, without being frameable', async () => {
      for (const query of [
        '',
        '?parentOrigin=https%3A%2F%2Fevil.example',
        '?parentOrigin=https%3A%2F%2Fshop.example%2Fpath',
        '?parentOrigin=https%3A%2F%2Fshop.example.evil.example',
        '?parentOrigin=javascript%3Aalert(1)',
        `?parentOrigin=${encodeURIComponent(PARENT)}&locale=${encodeURIComponent('<script>')}`,
      ]) {
        const res = await frame(query);
        expect(res.statusCode, query).toBe(400);
        expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
        expect(res.body).not.toContain('<script');
      }
    });
  });
});
