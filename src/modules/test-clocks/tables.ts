import { type Executor, ownTables } from '../../db/schema.js';

export interface TestClocksTable {
  id: string;
  name: string | null;
  frozen_time: Date;
  status: 'ready' | 'advancing';
  advancing_to: Date | null;
  advance_lease_until: Date | null;
  created_at: Date;
}

/** The test-clocks module's tables: only these can be queried through `testClockTables(executor)`. */
export interface TestClockTables {
  test_clocks: TestClocksTable;
}

export const testClockTables = (executor: Executor) => ownTables<TestClockTables>(executor);
