import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AssertionError } from '../kernel/assert.js';
import { DomainError, type ErrorCode, type FieldError, problemTitle, statusOf } from '../kernel/errors.js';

/** RFC 9457 problem document, as API.md promises. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  errors: FieldError[];
  requestId?: string;
  [extra: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';
const TYPE_BASE = 'https://reprise.dev/problems/';

export function problem(
  code: ErrorCode,
  detail: string,
  errors: FieldError[] = [],
  extra: Record<string, unknown> = {},
): Problem {
  return {
    type: `${TYPE_BASE}${code}`,
    title: problemTitle(code),
    status: statusOf(code),
    detail,
    code,
    errors,
    ...extra,
  };
}

/** "/prices/0/amount" → "prices[0].amount" */
export function toFieldPath(instancePath: string): string {
  const parts = instancePath.split('/').filter((p) => p !== '');
  let out = '';
  for (const part of parts) {
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

const CONTEXT_NAME: Record<string, NonNullable<FieldError['in']>> = {
  body: 'body',
  querystring: 'query',
  params: 'path',
  headers: 'header',
};

const CODE_OF_STATUS: Record<number, ErrorCode> = {
  400: 'validation_failed',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  431: 'headers_too_large',
};

/**
 * Answers a request Node's HTTP parser refused before Fastify saw it (malformed request line or
 * headers, conflicting Content-Length, headers over the limit, too slow) with a problem document,
 * written on the socket, which is then closed.
 */
export function clientErrorResponse(err: NodeJS.ErrnoException): string {
  const code: ErrorCode =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'request_timeout'
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 'headers_too_large'
        : 'validation_failed';
  const detail =
    code === 'request_timeout'
      ? 'The request did not arrive in time.'
      : code === 'headers_too_large'
        ? 'The request headers are larger than this server accepts.'
        : 'The request is not well-formed HTTP.';
  const p = problem(
    code,
    detail,
    code === 'validation_failed' ? [{ path: 'request', message: 'is malformed' }] : [],
  );
  const body = JSON.stringify(p);
  return (
    `HTTP/1.1 ${p.status} ${p.title}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

/** Maps anything thrown in a request to a problem document; unknown errors are 500s and logged. */
export function toProblem(error: unknown, request: FastifyRequest): Problem {
  if (error instanceof DomainError) {
    // An expected 5xx (a lost data key, another master key) is still an operator's problem: the
    // request id in the answer must find it in the logs.
    if (statusOf(error.code) === 500) request.log.error({ err: error, code: error.code }, error.message);
    return problem(error.code, error.message, error.errors, error.extra);
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    const where = CONTEXT_NAME[(error as FastifyError).validationContext ?? 'body'] ?? 'body';
    const errors = error.validation.map((v) => {
      const path = toFieldPath(v.instancePath);
      return { path: path === '' ? where : path, in: where, message: v.message ?? 'is invalid' };
    });
    return problem('validation_failed', errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
  }
  const fe = error as Partial<FastifyError> & { statusCode?: number };
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problem('payload_too_large', 'The request body is larger than this server accepts.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problem('unsupported_media_type', 'Send JSON with Content-Type: application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return problem('validation_failed', 'The body is not valid JSON.', [
        { path: 'body', message: 'is not valid JSON' },
      ]);
    case 'FST_ERR_BAD_URL':
      return problem('validation_failed', 'The path is not valid percent-encoded UTF-8.', [
        { path: 'path', message: 'is not valid percent-encoded UTF-8' },
      ]);
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return problem('uri_too_long', 'A path parameter is longer than this server accepts.', [
        { path: 'path', message: 'has a parameter that is too long' },
      ]);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return problem('validation_failed', 'Content-Length does not match the body.', [
        { path: 'body', message: 'does not match Content-Length' },
      ]);
  }
  if (fe.statusCode === 429) return problem('rate_limited', fe.message ?? 'Too many requests.');
  if (fe.statusCode === 400 && typeof fe.message === 'string') {
    return problem('validation_failed', fe.message, [{ path: 'body', message: fe.message }]);
  }
  if (fe.statusCode === 503)
    return problem('service_unavailable', 'The server is shutting down or not ready.');
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Any other refusal the framework or a plugin makes is still a problem document whose code
    // agrees with its status.
    request.log.warn({ err: error }, 'framework refusal');
    const code = CODE_OF_STATUS[fe.statusCode];
    if (code) return problem(code, 'The request was refused.');
    return { ...problem('validation_failed', 'The request is malformed.'), status: fe.statusCode };
  }
  request.log.error({ err: error, assertion: error instanceof AssertionError }, 'unhandled error');
  return problem(
    'internal_error',
    'Something went wrong on our side; the request id identifies it in our logs.',
  );
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply
    .code(p.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify({ ...p, requestId: reply.request.id }));
}
