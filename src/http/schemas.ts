import { z } from 'zod';

/** ISO-8601 UTC timestamp, second precision. */
export const timestamp = z.string().describe('ISO-8601 UTC, e.g. 2012-02-01T00:03:42Z');

export const problemDto = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe('Stable machine-readable error code'),
    errors: z.array(z.object({ path: z.string(), message: z.string(), in: z.string().optional() })),
    requestId: z.string().optional(),
  })
  .passthrough()
  .describe('RFC 9457 problem details');

/** Error responses every /v1 route can give, for the OpenAPI document. */
export const problemResponses = {
  400: problemDto.describe('validation_failed'),
  401: problemDto.describe('unauthenticated'),
  403: problemDto.describe('forbidden'),
  404: problemDto.describe('not_found'),
  409: problemDto.describe('already_exists, invalid_state or idempotency_key_in_use'),
  422: problemDto.describe('idempotency_key_reused'),
  429: problemDto.describe('rate_limited'),
} as const;
