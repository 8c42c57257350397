import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openApiDocument, SCHEMA_PATH, schemaSource } from '../../scripts/web-api.js';

describe("the web pages' API types", () => {
  it('are generated from the current /openapi.json (run `npm run web:api` after changing a route)', async () => {
    const fresh = await schemaSource(await openApiDocument());
    const committed = readFileSync(SCHEMA_PATH, 'utf8');
    expect(committed === fresh, 'web/src/api/schema.d.ts is stale: run `npm run web:api`').toBe(true);
  });
});
