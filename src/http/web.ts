import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problem, sendProblem } from './problem.js';

/** Where `npm run build` puts the web pages (vite): `<package root>/dist/web`. */
export function webRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'web');
    dir = dirname(dir);
  }
  return join(process.cwd(), 'dist', 'web');
}

/** Names vite gives built assets (flat, hashed): anything else is not ours to serve. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

/**
 * The web pages (hosted checkout, customer portal, admin console: a React app in web/) served next
 * to the API from the same origin. Page routes answer the app's index.html, which reads its own
 * data through the API; they are public routes (the pages hold no data), decided on the matched
 * route like every other. `frameSources`: origins of the payment providers' card frames.
 */
export async function installWeb(
  app: FastifyInstance,
  options: { root?: string; frameSources: () => readonly string[] },
): Promise<void> {
  const root = options.root ?? webRoot();
  const indexPath = join(root, 'index.html');
  let index: Buffer | null = null;
  const loadIndex = (): Buffer | null => {
    if (index === null && existsSync(indexPath)) index = readFileSync(indexPath);
    return index;
  };
  await app.register(fastifyStatic, { root, serve: false, decorateReply: true });

  const open = { public: true } as const;
  const hide = { hide: true } as const;

  const page = async (request: FastifyRequest, reply: FastifyReply) => {
    const html = loadIndex();
    if (html === null) {
      return sendProblem(
        reply,
        problem(
          'service_unavailable',
          'The web pages are not built: run `npm run build` (npm start does it).',
        ),
      );
    }
    const frames = options.frameSources().join(' ');
    reply
      .header(
        'content-security-policy',
        [
          "default-src 'self'",
          "script-src 'self'",
          // Mantine's theme variables and chart libraries set inline styles.
          "style-src 'self' 'unsafe-inline'",
          "img-src 'self' data: blob:",
          "font-src 'self' data:",
          "connect-src 'self'",
          `frame-src ${frames === '' ? "'none'" : frames}`,
          "frame-ancestors 'none'",
          "base-uri 'none'",
          "form-action 'self'",
          "object-src 'none'",
        ].join('; '),
      )
      .header('x-frame-options', 'DENY')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8');
    // The console in its own browsing context group: a site that opened it (window.open) keeps
    // no handle on it, so it cannot navigate it to a look-alike sign-in or count its frames. Not
    // on the hosted pages: a merchant may open a checkout in a popup and watch for it to close.
    if (request.routeOptions.url?.startsWith('/admin'))
      reply.header('cross-origin-opener-policy', 'same-origin');
    return reply.send(html);
  };
  for (const url of ['/checkout/*', '/portal/*', '/admin', '/admin/*']) {
    app.get(url, { schema: hide, config: open }, page);
  }
  app.get('/assets/*', { schema: hide, config: open }, async (request, reply) => {
    const name = (request.params as { '*': string })['*'];
    if (!ASSET_NAME.test(name) || !existsSync(join(root, 'assets', name))) {
      return sendProblem(reply, problem('not_found', 'No such asset.'));
    }
    reply.header('x-content-type-options', 'nosniff');
    return reply.sendFile(name, join(root, 'assets'), { immutable: true, maxAge: 31_536_000_000 });
  });
}
