import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';

export type { paths };

/** RFC 9457 problem document the API answers errors with. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  errors?: Array<{ path: string; message: string; in?: string }>;
  declineCode?: string;
  [key: string]: unknown;
}

/** Every POST, PATCH and DELETE carries a fresh Idempotency-Key unless the caller set one. */
const idempotency: Middleware = {
  onRequest({ request }) {
    if (request.method !== 'GET' && !request.headers.has('Idempotency-Key')) {
      request.headers.set('Idempotency-Key', crypto.randomUUID());
    }
    return request;
  },
};

/**
 * A typed client of this server's API (types generated from its /openapi.json). `secret`: a hosted
 * page's session secret (checkout, portal) sent as the bearer; without it the admin console's
 * HttpOnly session cookie authenticates (same origin only).
 */
export function apiClient(secret?: string) {
  const client = createClient<paths>({
    baseUrl: window.location.origin,
    credentials: 'same-origin',
    headers: secret ? { authorization: `Bearer ${secret}` } : {},
  });
  client.use(idempotency);
  return client;
}

export type ApiClient = ReturnType<typeof apiClient>;

/** The problem's text for a person: its detail, else its title. */
export function problemMessage(error: unknown, fallback = 'Something went wrong. Try again.'): string {
  if (error && typeof error === 'object') {
    const p = error as Problem;
    if (typeof p.detail === 'string' && p.detail !== '') return p.detail;
    if (typeof p.title === 'string' && p.title !== '') return p.title;
  }
  if (error instanceof Error && error.message) return error.message;
  return fallback;
}

/** Thrown by `must` when the API answered an error: carries the problem document. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(problemMessage(problem));
    this.name = 'ApiError';
  }
}

/** The data of an openapi-fetch answer, or an ApiError. */
export async function must<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok || data === undefined) {
    throw new ApiError(response.status, (error ?? {}) as Problem);
  }
  return data;
}
