import type { FastifyInstance } from 'fastify';
import { DomainError, type FieldError } from '../kernel/errors.js';

type Where = 'body' | 'query' | 'path';
interface PlacedError extends FieldError {
  in: Where;
}

/** Objects and arrays are walked this deep at most; deeper input is refused (bounded work). */
const DEPTH_MAX = 32;
const ERRORS_MAX = 20;

/**
 * Input every route refuses before its own validation runs, once for all routes:
 * - NUL characters and lone UTF-16 surrogates in any string (PostgreSQL text cannot hold NUL;
 *   a lone surrogate is not text), named by field;
 * - after validation, fields the route does not know: a client's intent is never silently
 *   changed by dropping what it sent (`{"amount":1001}` on a route without `amount`).
 */
export function installInputGuards(app: FastifyInstance): void {
  app.addHook('preValidation', async (request) => {
    const errors: PlacedError[] = [];
    checkStrings(request.params, 'path', '', errors, 0);
    checkStrings(request.query, 'query', '', errors, 0);
    if (typeof request.body === 'string') {
      if (!isCleanText(request.body)) errors.push({ path: 'body', in: 'body', message: BAD_TEXT });
    } else {
      checkStrings(request.body, 'body', '', errors, 0);
    }
    if (errors.length > 0) throw refusal(errors);
    // Keep what the client sent: validation replaces body and query by what the schema parsed.
    request.sentInput = { body: request.body, query: request.query };
  });

  app.addHook('preHandler', async (request) => {
    const sent = request.sentInput;
    const url = request.routeOptions.url;
    if (!sent || !url?.startsWith('/v1/')) return;
    const schema = request.routeOptions.schema ?? {};
    const errors: PlacedError[] = [];
    // Raw-string bodies (signed webhooks) are not JSON objects to compare.
    if (typeof sent.body !== 'string') {
      unknownFields(sent.body, schema.body ? request.body : undefined, 'body', '', errors, 0);
    }
    unknownFields(sent.query, schema.querystring ? request.query : undefined, 'query', '', errors, 0);
    if (errors.length > 0) throw refusal(errors);
  });
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The body and query as sent, before validation parsed them (see input-guards.ts). */
    sentInput?: { body: unknown; query: unknown };
  }
}

const BAD_TEXT = 'must not contain NUL characters or unpaired UTF-16 surrogates';

/** A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isCleanText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}

function join(prefix: string, key: string | number): string {
  if (typeof key === 'number') return `${prefix}[${key}]`;
  return prefix === '' ? key : `${prefix}.${key}`;
}

function checkStrings(value: unknown, where: Where, path: string, errors: PlacedError[], depth: number) {
  if (errors.length >= ERRORS_MAX) return;
  if (typeof value === 'string') {
    if (!isCleanText(value)) errors.push({ path: path === '' ? where : path, in: where, message: BAD_TEXT });
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (depth >= DEPTH_MAX) {
    errors.push({
      path: path === '' ? where : path,
      in: where,
      message: `is nested deeper than ${DEPTH_MAX}`,
    });
    return;
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) checkStrings(item, where, join(path, i), errors, depth + 1);
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    if (!isCleanText(key)) {
      errors.push({
        path: path === '' ? where : path,
        in: where,
        message: `has a field name that ${BAD_TEXT}`,
      });
      continue;
    }
    checkStrings(item, where, join(path, key), errors, depth + 1);
  }
}

/**
 * Names every field of `sent` that `parsed` (the validated value) does not have. Schemas strip
 * unknown keys, so a key present in what was sent and absent from what was parsed is unknown to
 * the route. `parsed` undefined: the route takes no input here, so every field is unknown.
 */
function unknownFields(
  sent: unknown,
  parsed: unknown,
  where: Where,
  path: string,
  errors: PlacedError[],
  depth: number,
) {
  if (errors.length >= ERRORS_MAX || depth >= DEPTH_MAX) return;
  if (sent === null || typeof sent !== 'object') return;
  if (Array.isArray(sent)) {
    if (!Array.isArray(parsed)) return;
    for (const [i, item] of sent.entries()) {
      unknownFields(item, parsed[i], where, join(path, i), errors, depth + 1);
    }
    return;
  }
  const parsedObject =
    parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : null;
  if (parsed !== undefined && parsedObject === null) return;
  for (const [key, item] of Object.entries(sent)) {
    if (parsedObject === null || !Object.hasOwn(parsedObject, key)) {
      errors.push({ path: join(path, key), in: where, message: 'is not a known field of this request' });
      continue;
    }
    unknownFields(item, parsedObject[key], where, join(path, key), errors, depth + 1);
  }
}

function refusal(errors: PlacedError[]): DomainError {
  return new DomainError('validation_failed', errors.map((e) => `${e.path}: ${e.message}`).join('; '), {
    errors,
  });
}
