import { describe, expect, it } from 'vitest';
import { AdvisoryLockLeadership } from '../../src/events/relay.js';
import { freshDatabase } from '../support/database.js';

// PostgreSQL only (excluded from the embedded run in vitest.config.ts): one process has one relay.
describe('relay leadership across nodes (PostgreSQL advisory lock)', () => {
  it('one node leads at a time; when its session ends another takes over', async () => {
    const database = await freshDatabase();
    try {
      const a = new AdvisoryLockLeadership(database.url!, 'lead-test');
      const b = new AdvisoryLockLeadership(database.url!, 'lead-test');
      expect(await a.check()).toBe(true);
      expect(await b.check()).toBe(false);
      expect(await a.check()).toBe(true); // still held, not re-entered
      await a.release(); // the session ends: its lock goes with it
      expect(await b.check()).toBe(true);
      expect(await a.check()).toBe(false);
      await b.release();
    } finally {
      await database.close();
    }
  });
});
