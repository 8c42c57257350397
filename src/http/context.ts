import type { Scope } from '../modules/api-keys/scopes.js';
import type { Principal } from '../modules/api-keys/service.js';
import type { AdminSession } from '../modules/api-keys/sessions.js';
import type { FailedAuthLimiter, PageSessionKind } from './auth.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Scope a key needs for this route; routes outside /v1 are public. */
    scope?: Scope;
    /** Audit action name, e.g. `customers.create`. Mutating routes only. */
    action?: string;
    /** Audit resource type, e.g. `customer`. */
    resourceType?: string;
    /** No API key: the route authenticates its caller itself (provider webhooks verify a signature). */
    public?: boolean;
    /**
     * Top-level body fields holding personal data: left out of the idempotency fingerprint, so a
     * stored answer can never confirm a guessed value (a retry differing only in them replays).
     */
    personalFields?: readonly string[];
    /**
     * No API key: a hosted page's session secret (`Authorization: Bearer <secret>`) authenticates
     * the caller, checked by the verifier registered for this kind (http/auth.ts PageSessionAuth).
     */
    pageSession?: PageSessionKind;
  }
  interface FastifyInstance {
    /** Failed authentications per client address: also what the console sign-in counts. */
    failedAuth: FailedAuthLimiter;
  }
  interface FastifyRequest {
    principal?: Principal;
    /** The admin console session whose cookie authenticated this request (ADR 0022), if any. */
    adminSession?: AdminSession;
    /** Set once the unit of work wrote the audit entry in its transaction. */
    audited?: boolean;
  }
}
