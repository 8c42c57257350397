import { sql } from 'kysely';
import type { PaymentsContext } from '../context.js';

/**
 * How long a webhook's event id is remembered. Providers retry a delivery for up to 3 days
 * (Stripe) and sign each attempt afresh; events are also idempotent by their facts (monotone
 * state, ledger keys per fact), so the window only saves work. 30 days is ten times that.
 */
export const PROVIDER_EVENTS_RETENTION_DAYS = 30;

/** Deletes event ids older than the retention, at most `batchMax` rows per call (oldest first). */
export async function pruneProviderEvents(ctx: PaymentsContext, batchMax = 10_000): Promise<number> {
  const cutoff = new Date(ctx.clock.now().getTime() - PROVIDER_EVENTS_RETENTION_DAYS * 86_400_000);
  const result = await sql`
    WITH doomed AS (
      SELECT provider, event_id FROM provider_events
      WHERE received_at < ${cutoff}
      ORDER BY received_at LIMIT ${batchMax}
    )
    DELETE FROM provider_events e USING doomed d
    WHERE e.provider = d.provider AND e.event_id = d.event_id`.execute(ctx.tables);
  return Number(result.numAffectedRows ?? 0n);
}
