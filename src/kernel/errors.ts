/**
 * Typed domain errors. Expected outcomes (not found, invalid state, declined) are thrown as
 * `DomainError` with a stable `code`; the HTTP layer turns them into RFC 9457 problem+json.
 * Anything else that is thrown is a bug and becomes a 500.
 */
export interface FieldError {
  /** Where the bad value is, e.g. `prices[0].amount`. */
  path: string;
  /** Which part of the request: body, query, path or header. */
  in?: 'body' | 'query' | 'path' | 'header';
  message: string;
}

export type ErrorCode =
  | 'validation_failed'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'already_exists'
  | 'invalid_state'
  | 'invoice_not_finalized'
  | 'idempotency_key_reused'
  | 'idempotency_key_in_use'
  | 'rate_limited'
  | 'too_many_attempts'
  | 'payload_too_large'
  | 'uri_too_long'
  | 'request_timeout'
  | 'headers_too_large'
  | 'unsupported_media_type'
  | 'price_not_found'
  | 'payment_declined'
  | 'ledger_conflict'
  | 'provider_unavailable'
  | 'internal_error'
  | 'master_key_mismatch'
  | 'data_key_missing'
  | 'service_unavailable';

const STATUS: Record<ErrorCode, number> = {
  validation_failed: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  already_exists: 409,
  invalid_state: 409,
  invoice_not_finalized: 409,
  idempotency_key_reused: 422,
  idempotency_key_in_use: 409,
  rate_limited: 429,
  too_many_attempts: 429,
  payload_too_large: 413,
  uri_too_long: 414,
  request_timeout: 408,
  headers_too_large: 431,
  unsupported_media_type: 415,
  price_not_found: 422,
  payment_declined: 402,
  ledger_conflict: 409,
  provider_unavailable: 503,
  internal_error: 500,
  master_key_mismatch: 500,
  data_key_missing: 500,
  service_unavailable: 503,
};

const TITLE: Record<ErrorCode, string> = {
  validation_failed: 'Invalid request',
  unauthenticated: 'Authentication required',
  forbidden: 'Forbidden',
  not_found: 'Resource not found',
  already_exists: 'Resource already exists',
  invalid_state: 'Invalid state for this operation',
  invoice_not_finalized: 'Invoice not finalised yet',
  idempotency_key_reused: 'Idempotency key reused with a different request',
  idempotency_key_in_use: 'Idempotency key in use by a running request',
  rate_limited: 'Too many requests',
  too_many_attempts: 'Too many attempts',
  payload_too_large: 'Request body too large',
  uri_too_long: 'Request URI too long',
  request_timeout: 'Request not received in time',
  headers_too_large: 'Request headers too large',
  unsupported_media_type: 'Unsupported media type',
  price_not_found: 'No price for this customer',
  payment_declined: 'Payment declined',
  ledger_conflict: 'Ledger idempotency key reused with other postings',
  provider_unavailable: 'Payment provider unavailable',
  internal_error: 'Internal server error',
  master_key_mismatch: 'Personal data sealed under another master key',
  data_key_missing: 'Personal data key missing',
  service_unavailable: 'Service unavailable',
};

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  readonly errors: FieldError[];
  /** Extra members of the problem document (e.g. `declineCode`, `subscription`). */
  readonly extra: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    detail: string,
    opts: { errors?: FieldError[]; extra?: Record<string, unknown> } = {},
  ) {
    super(detail);
    this.name = 'DomainError';
    this.code = code;
    this.status = STATUS[code];
    this.title = TITLE[code];
    this.errors = opts.errors ?? [];
    this.extra = opts.extra ?? {};
  }
}

export const notFound = (resource: string, ref: string): DomainError =>
  new DomainError('not_found', `No ${resource} found for '${ref}'.`, { extra: { resource } });

export const invalid = (
  path: string,
  message: string,
  where: NonNullable<FieldError['in']> = 'body',
): DomainError =>
  new DomainError('validation_failed', `${path}: ${message}`, { errors: [{ path, in: where, message }] });

export const invalidMany = (errors: FieldError[]): DomainError =>
  new DomainError('validation_failed', errors.map((e) => `${e.path}: ${e.message}`).join('; '), { errors });

export const invalidState = (detail: string): DomainError => new DomainError('invalid_state', detail);

/**
 * A hosted page's session has used up its card attempts (`attemptsMax`): a link someone got hold
 * of is no tool for testing a list of stolen cards. The session stays usable for everything else;
 * more cards need a new session. Shared by the checkout's confirm and the portal's card attach.
 */
export const tooManyAttempts = (detail: string, attemptsMax: number): DomainError =>
  new DomainError('too_many_attempts', detail, { extra: { attemptsMax } });

export const alreadyExists = (resource: string, field: string, value: string): DomainError =>
  new DomainError('already_exists', `A ${resource} with ${field} '${value}' already exists.`, {
    errors: [{ path: field, in: 'body', message: `'${value}' is already taken` }],
  });

export function problemTitle(code: ErrorCode): string {
  return TITLE[code];
}

export function statusOf(code: ErrorCode): number {
  return STATUS[code];
}
