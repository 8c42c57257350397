export interface TestClocksTable {
  id: string;
  name: string | null;
  frozen_time: Date;
  status: 'ready' | 'advancing';
  advancing_to: Date | null;
  advance_lease_until: Date | null;
  created_at: Date;
}
