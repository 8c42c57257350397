import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeSchema } from '../../src/db/describe-schema.js';
import { openDatabase } from '../../src/db/engine.js';
import { migrate } from '../../src/db/migrate.js';
import { ENGINE, freshDatabase } from '../support/database.js';

// Both CI runs (PGlite and PostgreSQL) compare their schema with the same committed snapshot, so
// the engines cannot drift apart; with a server at hand, they are also compared directly.
// After changing a migration: `npm run schema:snapshot`, then review the diff.
describe(`schema after all migrations (${ENGINE})`, () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  beforeAll(async () => {
    db = await freshDatabase();
    await migrate(db.db);
  });
  afterAll(() => db.close());

  it('matches the committed snapshot', async () => {
    const schema = await describeSchema(db.db);
    await expect(`${JSON.stringify(schema, null, 2)}\n`).toMatchFileSnapshot('./schema.snapshot.json');
  });

  // Defined in the PostgreSQL run only: it needs the server.
  if (ENGINE === 'postgres') {
    it('is identical on PGlite and on the PostgreSQL server', async () => {
      const embedded = await openDatabase({ dataDir: 'memory://' });
      try {
        await migrate(embedded.db);
        expect(await describeSchema(embedded.db)).toEqual(await describeSchema(db.db));
      } finally {
        await embedded.close();
      }
    });
  }
});
