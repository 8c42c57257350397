-- The per-statement checks of new postings are planned without sequential scans. plpgsql plans a
-- trigger's queries once per session and keeps them; a session that first posted while
-- ledger_accounts held a handful of rows planned each LATERAL probe of it as a sequential scan
-- (cheapest on a tiny table) and kept that plan as the table grew: at 225,000 accounts every
-- posting read them all, and a million-subscription renewal run fell to half its rate (0050 wrote
-- the probes as LATERAL lookups; this makes the planner take their indexes whatever the sizes it
-- saw). The function's only scans without an index are of its transition table, which stays one.
ALTER FUNCTION ledger_check_new_postings() SET enable_seqscan = off;
