import { createHash } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { type CardInput, tokenizeCard } from './tokens.js';

/**
 * The simulator's card frame, as Stripe Elements: a page on the PROVIDER's origin that a hosted
 * checkout page embeds in an iframe. The customer types the card there; the frame tokenizes it
 * with the provider (`POST /v1/tokens`, same origin) and hands the parent page only a token. Card
 * numbers never reach the parent's origin, its API or its logs: PCI scope stays at the provider.
 *
 * Protocol (window.postMessage, exact):
 *   frame → parent  { type: 'reprise-card:ready' }
 *                   { type: 'reprise-card:resize', height }
 *                   { type: 'reprise-card:token', requestId, token, card: { brand, last4 } }
 *                   { type: 'reprise-card:error', requestId, message, field: 'number'|'expiry'|'cvc'|null }
 *   parent → frame  { type: 'reprise-card:tokenize', requestId }
 * The frame posts only to `parentOrigin` and takes messages only from it (origin and source).
 */

/** Longest parent origin or locale accepted in the frame's query. */
const QUERY_VALUE_MAX = 256;
/** Largest token request body: a card is a few dozen bytes. */
export const TOKENS_BODY_MAX = 2_048;
/** Tokenizations per client address and minute (loose: a shopper retyping a card never meets it). */
export const TOKENS_PER_MINUTE_DEFAULT = 300;

const CSS = `html,body{margin:0;padding:0;background:transparent}
body{display:flow-root;font:16px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328}
form{display:grid;gap:12px;margin:0}
.row{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}
.field{display:flex;flex-direction:column;min-width:0}
label{font-size:14px;font-weight:600;margin:0 0 4px}
input{box-sizing:border-box;width:100%;min-height:44px;margin:0;padding:10px 12px;font:inherit;font-size:16px;color:#1f2328;background:#fff;border:1px solid #6e7781;border-radius:6px}
input::placeholder{color:#6e7781}
input:focus{outline:2px solid #0969da;outline-offset:-2px;border-color:#0969da}
input[aria-invalid="true"]{border-color:#cf222e}
.error{margin:4px 0 0;font-size:14px;color:#b3141f}
.error:empty{margin:0}`;

const SCRIPT = `(() => {
  'use strict';
  const parentOrigin = document.body.getAttribute('data-parent-origin');
  const fieldNames = ['number', 'expiry', 'cvc'];
  const inputs = {};
  const errors = {};
  for (const name of fieldNames) {
    inputs[name] = document.getElementById(name);
    errors[name] = document.getElementById(name + '-error');
  }
  const framed = window.parent !== window;
  const post = (message) => {
    if (framed) window.parent.postMessage(message, parentOrigin);
  };
  let lastHeight = -1;
  const resize = () => {
    const height = Math.ceil(document.body.getBoundingClientRect().height);
    if (height === lastHeight) return;
    lastHeight = height;
    post({ type: 'reprise-card:resize', height });
  };
  const show = (name, message) => {
    inputs[name].setAttribute('aria-invalid', message ? 'true' : 'false');
    errors[name].textContent = message;
    resize();
  };
  const digitsOf = (value) => value.replace(/[^0-9]/g, '');
  const isAmex = (digits) => /^3[47]/.test(digits);
  const luhn = (digits) => {
    let sum = 0;
    for (let i = 0; i < digits.length; i++) {
      let d = digits.charCodeAt(digits.length - 1 - i) - 48;
      if (i % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return sum % 10 === 0;
  };
  const formatNumber = (digits) => {
    const groups = isAmex(digits) ? [4, 6, 5] : [4, 4, 4, 4, 3];
    const parts = [];
    let at = 0;
    for (const size of groups) {
      if (at >= digits.length) break;
      parts.push(digits.slice(at, at + size));
      at += size;
    }
    return parts.join(' ');
  };
  inputs.number.addEventListener('input', () => {
    const digits = digitsOf(inputs.number.value).slice(0, 19);
    inputs.number.value = formatNumber(isAmex(digits) ? digits.slice(0, 15) : digits);
    if (errors.number.textContent) show('number', '');
  });
  inputs.expiry.addEventListener('input', (event) => {
    let digits = digitsOf(inputs.expiry.value).slice(0, 4);
    if (digits.length === 1 && digits > '1') digits = '0' + digits;
    const deleting = event.inputType && event.inputType.startsWith('delete');
    inputs.expiry.value =
      digits.length > 2 || (digits.length === 2 && !deleting) ? digits.slice(0, 2) + ' / ' + digits.slice(2) : digits;
    if (errors.expiry.textContent) show('expiry', '');
  });
  inputs.cvc.addEventListener('input', () => {
    inputs.cvc.value = digitsOf(inputs.cvc.value).slice(0, 4);
    if (errors.cvc.textContent) show('cvc', '');
  });
  document.getElementById('card').addEventListener('submit', (event) => event.preventDefault());

  const check = () => {
    const found = [];
    const number = digitsOf(inputs.number.value);
    if (number.length === 0) found.push(['number', 'Enter your card number.']);
    else if (number.length < 12 || !luhn(number)) found.push(['number', 'Your card number is incorrect.']);
    const expiry = digitsOf(inputs.expiry.value);
    const month = Number(expiry.slice(0, 2));
    const year = 2000 + Number(expiry.slice(2));
    const now = new Date();
    if (expiry.length === 0) found.push(['expiry', 'Enter the expiry date (MM / YY).']);
    else if (expiry.length !== 4) found.push(['expiry', "Your card's expiry date is incomplete."]);
    else if (month < 1 || month > 12) found.push(['expiry', "Your card's expiration month is invalid."]);
    else if (Date.UTC(year, month, 1) <= now.getTime())
      found.push(['expiry', "Your card's expiration date is in the past."]);
    const cvc = digitsOf(inputs.cvc.value);
    const cvcLength = isAmex(number) ? 4 : 3;
    if (cvc.length === 0) found.push(['cvc', "Enter your card's security code."]);
    else if (cvc.length !== cvcLength) found.push(['cvc', "Your card's security code is incomplete."]);
    return { found, card: { number, expMonth: month, expYear: year, cvc } };
  };

  let busy = false;
  const tokenize = (requestId) => {
    const fail = (message, field) => post({ type: 'reprise-card:error', requestId, message, field });
    if (busy) return fail('Your card is being checked.', null);
    for (const name of fieldNames) show(name, '');
    const { found, card } = check();
    if (found.length > 0) {
      for (const [name, message] of found) show(name, message);
      inputs[found[0][0]].focus();
      return fail(found[0][1], found[0][0]);
    }
    busy = true;
    fetch('/v1/tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ card }),
      credentials: 'omit',
      cache: 'no-store',
    })
      .then((res) => res.json().then((body) => ({ ok: res.ok, body })))
      .then(({ ok, body }) => {
        busy = false;
        if (ok && body && typeof body.id === 'string' && body.card) {
          post({
            type: 'reprise-card:token',
            requestId,
            token: body.id,
            card: { brand: body.card.brand, last4: body.card.last4 },
          });
          return;
        }
        const error = (body && body.error) || {};
        const field = fieldNames.includes(error.field) ? error.field : null;
        const message = typeof error.message === 'string' ? error.message : 'Your card could not be checked.';
        if (field) {
          show(field, message);
          inputs[field].focus();
        }
        fail(message, field);
      })
      .catch(() => {
        busy = false;
        fail('Your card could not be checked. Check your connection and try again.', null);
      });
  };

  window.addEventListener('message', (event) => {
    if (event.origin !== parentOrigin || event.source !== window.parent) return;
    const data = event.data;
    if (!data || typeof data !== 'object' || data.type !== 'reprise-card:tokenize') return;
    if (typeof data.requestId !== 'string' || data.requestId.length === 0 || data.requestId.length > 200) return;
    tokenize(data.requestId);
  });
  if (typeof ResizeObserver === 'function') new ResizeObserver(resize).observe(document.body);
  post({ type: 'reprise-card:ready' });
  resize();
})();`;

const cspHash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const SCRIPT_HASH = cspHash(SCRIPT);
const STYLE_HASH = cspHash(CSS);

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

/** The frame's HTML for a parent origin already checked against the allowed ones. */
export function cardFrameHtml(parentOrigin: string): string {
  const field = (name: string, label: string, autocomplete: string, extra: string) =>
    `<div class="field"><label for="${name}">${label}</label>` +
    `<input id="${name}" name="${name}" type="text" inputmode="numeric" autocomplete="${autocomplete}" ` +
    `spellcheck="false" aria-invalid="false" aria-describedby="${name}-error"${extra}>` +
    `<p id="${name}-error" class="error" role="alert"></p></div>`;
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>Card details</title><style>${CSS}</style></head>` +
    `<body data-parent-origin="${escapeHtml(parentOrigin)}">` +
    '<form id="card" novalidate>' +
    field('number', 'Card number', 'cc-number', ' maxlength="23" placeholder="1234 1234 1234 1234"') +
    '<div class="row">' +
    field('expiry', 'Expiry', 'cc-exp', ' maxlength="7" placeholder="MM / YY"') +
    field('cvc', 'CVC', 'cc-csc', ' maxlength="4" placeholder="123"') +
    '</div></form>' +
    `<script>${SCRIPT}</script></body></html>\n`
  );
}

/** The frame's Content-Security-Policy: only its own inline script and style, framed by `parentOrigin`. */
export function cardFrameCsp(parentOrigin: string): string {
  return [
    "default-src 'none'",
    `script-src ${SCRIPT_HASH}`,
    `style-src ${STYLE_HASH}`,
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    `frame-ancestors ${parentOrigin}`,
  ].join('; ');
}

/** `value` as an origin (`https://host[:port]`), or null when it is not one. */
export function originOf(value: string): string | null {
  if (value.length > QUERY_VALUE_MAX) return null;
  try {
    const url = new URL(value);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
    if (url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== ''))
      return null;
    if (url.search !== '' || url.hash !== '') return null;
    return url.origin;
  } catch {
    return null;
  }
}

/**
 * The frame (`GET /elements/card`) and tokenization (`POST /v1/tokens`) routes of a simulator:
 * public (no API key, like Stripe's publishable-key calls), outside the fault injection, bounded
 * (a small body, a loose per-address budget). `pageOrigins()` are the origins of the hosted pages
 * allowed to frame it (Providers.setPageOrigin, or `--page-origin` of `reprise psp-simulator`).
 */
export async function cardElementsRoutes(
  app: FastifyInstance,
  options: { pageOrigins: () => ReadonlySet<string>; tokensPerMinute?: number | undefined },
): Promise<void> {
  await app.register(rateLimit, { global: false });

  app.get<{ Querystring: { parentOrigin?: string; locale?: string } }>(
    '/elements/card',
    { config: { public: true } },
    async (req, reply) => {
      const parentOrigin = originOf(String(req.query.parentOrigin ?? ''));
      reply
        .header('cache-control', 'no-store')
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer');
      if (parentOrigin === null || !options.pageOrigins().has(parentOrigin)) {
        return reply
          .code(400)
          .header('content-security-policy', "default-src 'none'; frame-ancestors 'none'")
          .type('text/plain; charset=utf-8')
          .send(
            'parentOrigin must be the origin of a page this provider was told may embed its card frame.\n',
          );
      }
      const locale = req.query.locale;
      if (locale !== undefined && !isLocale(locale)) {
        return reply
          .code(400)
          .header('content-security-policy', "default-src 'none'; frame-ancestors 'none'")
          .type('text/plain; charset=utf-8')
          .send('locale must be a BCP 47 language tag.\n');
      }
      return reply
        .header('content-security-policy', cardFrameCsp(parentOrigin))
        .type('text/html; charset=utf-8')
        .send(cardFrameHtml(parentOrigin));
    },
  );

  app.post<{ Body: unknown }>(
    '/v1/tokens',
    {
      bodyLimit: TOKENS_BODY_MAX,
      config: {
        public: true,
        rateLimit: { max: options.tokensPerMinute ?? TOKENS_PER_MINUTE_DEFAULT, timeWindow: 60_000 },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const card = cardOf(req.body);
      if (typeof card === 'string') {
        return reply.code(400).send({
          error: {
            type: 'invalid_request_error',
            code: 'parameter_invalid',
            message: `Invalid or missing card.${card}.`,
            field: card === 'number' ? 'number' : card === 'cvc' ? 'cvc' : 'expiry',
          },
        });
      }
      const result = tokenizeCard(card, new Date());
      if (!result.ok) {
        return reply.code(result.status).send({
          error: { type: 'card_error', code: result.code, message: result.message, field: result.field },
        });
      }
      return { id: result.token, object: 'token', card: result.card };
    },
  );
}

/** A BCP 47 tag as Intl reads it (`sv-SE`, `en`), bounded. */
function isLocale(value: string): boolean {
  if (value.length === 0 || value.length > 35) return false;
  try {
    return Intl.getCanonicalLocales(value).length === 1;
  } catch {
    return false;
  }
}

/** The card of a token request, or the name of its first bad member. */
function cardOf(body: unknown): CardInput | 'number' | 'expMonth' | 'expYear' | 'cvc' {
  const card = (body as { card?: unknown } | null)?.card as Record<string, unknown> | undefined;
  const isText = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
  const isPart = (v: unknown): v is string | number =>
    (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 9999) || isText(v, 4);
  if (!card || typeof card !== 'object' || !isText(card.number, 32)) return 'number';
  if (!isPart(card.expMonth)) return 'expMonth';
  if (!isPart(card.expYear)) return 'expYear';
  if (!isText(card.cvc, 8)) return 'cvc';
  return { number: card.number, expMonth: card.expMonth, expYear: card.expYear, cvc: card.cvc };
}
