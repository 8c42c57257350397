import type { FastifyReply } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { ZodType } from 'zod';

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Response bytes of read endpoints over cached data (the catalog snapshot), kept while the data
 * they were rendered from is the same (`version`, compared by identity) and until an instant when
 * the answer changes by itself (a price version taking effect). A hit sends stored bytes: no
 * lookup, no validation, no serialisation. Bounded (LRU). Errors are never cached.
 */
export class RenderedCache {
  readonly #lru: LRUCache<string, { version: object; until: number; body: Buffer }>;

  constructor(max = 1_000) {
    this.#lru = new LRUCache({ max });
  }

  async send(
    reply: FastifyReply,
    key: string,
    version: object,
    nowMs: number,
    schema: ZodType,
    render: () => Promise<{ value: unknown; until?: number }>,
  ): Promise<FastifyReply> {
    const hit = this.#lru.get(key);
    if (hit && hit.version === version && nowMs < hit.until) return reply.type(JSON_TYPE).send(hit.body);
    const { value, until = Number.POSITIVE_INFINITY } = await render();
    // Validated once here, as the route's response schema would on every request.
    const body = Buffer.from(JSON.stringify(schema.parse(value)));
    this.#lru.set(key, { version, until, body });
    return reply.type(JSON_TYPE).send(body);
  }
}
