import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../../src/crypto/key-store.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Paths of the files under `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: Uint8Array): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const path = join(dir, entry);
    if (!statSync(path).isFile()) continue;
    if (readFileSync(path).includes(Buffer.from(needle))) found.push(entry);
  }
  return found;
}

describe(`erasure scrubs the embedded key store's files (${ENGINE} data, PGlite key store)`, () => {
  let t: TestApp;
  let dir: string;
  let keyStore: KeyStore;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'reprise-keystore-'));
    keyStore = await KeyStore.open({ dataDir: dir });
    t = await startTestApp({}, undefined, { keyStore });
    await t.markets('SE');
  });
  afterAll(async () => {
    await t.close();
    await keyStore.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('no file of the key store holds an erased customer’s key (table pages, WAL)', async () => {
    const created = await t.call('POST', '/v1/customers', {
      externalId: 'shred-1',
      market: 'SE',
      email: 'shred-me@example.com',
    });
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;
    const other = await t.call('POST', '/v1/customers', { externalId: 'keep-1', market: 'SE', name: 'Kept' });
    const otherId = other.json().id as string;
    const keys = await keyStore.get([id, otherId]);
    const wrapped = keys.get(id)?.wrapped;
    expect(wrapped).toBeDefined();
    // Flushed to the files, as a crash or a copy of the directory would find it.
    await keyStore.purgeDeleted();
    expect(filesContaining(dir, wrapped!)).not.toEqual([]);

    expect((await t.call('POST', `/v1/customers/${id}/erase`)).statusCode).toBe(200);
    expect(filesContaining(dir, wrapped!)).toEqual([]);
    // Other customers' keys survive the rewrite.
    expect((await t.call('GET', `/v1/customers/${otherId}`)).json().name).toBe('Kept');
  });
});
