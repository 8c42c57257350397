-- The per-statement checks of new postings (0009) probe the stored transactions, accounts and
-- postings by index, whatever the sizes: each lookup is a LATERAL subquery with LIMIT (never
-- flattened into a hash join). plpgsql caches a trigger's plans per session, planned once while
-- the tables were small; a hash join over a seq scan planned then read every stored transaction on
-- every later post (a renewal run of 100,000 slowed to a third as the ledger grew).
CREATE OR REPLACE FUNCTION ledger_check_new_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT n.transaction_id, n.account_id, n.currency, t.id IS NULL AS orphan INTO bad
    FROM new_postings n
    LEFT JOIN LATERAL (
      SELECT t.id FROM ledger_transactions t WHERE t.id = n.transaction_id LIMIT 1
    ) t ON true
    LEFT JOIN LATERAL (
      SELECT a.id FROM ledger_accounts a WHERE a.id = n.account_id AND a.currency = n.currency LIMIT 1
    ) a ON true
    WHERE t.id IS NULL OR a.id IS NULL LIMIT 1;
  IF FOUND AND bad.orphan THEN
    RAISE EXCEPTION 'posting of unknown ledger transaction %', bad.transaction_id USING ERRCODE = '23503';
  END IF;
  IF FOUND THEN
    RAISE EXCEPTION 'posting of ledger transaction % names no % account %', bad.transaction_id, bad.currency, bad.account_id
      USING ERRCODE = '23503';
  END IF;
  SELECT x.transaction_id, x.currency, x.total, x.extended INTO bad FROM (
      SELECT n.transaction_id, p.currency, sum(p.amount_minor) AS total, bool_or(p.pxmin <> t.txmin) AS extended
      FROM (SELECT DISTINCT transaction_id FROM new_postings) n
      CROSS JOIN LATERAL (
        SELECT p.currency, p.amount_minor, p.xmin AS pxmin FROM ledger_postings p
        WHERE p.transaction_id = n.transaction_id OFFSET 0
      ) p
      CROSS JOIN LATERAL (
        SELECT t.xmin AS txmin FROM ledger_transactions t WHERE t.id = n.transaction_id LIMIT 1
      ) t
      GROUP BY n.transaction_id, p.currency
    ) x WHERE x.total <> 0 OR x.extended LIMIT 1;
  IF FOUND AND bad.extended THEN
    RAISE EXCEPTION 'ledger transaction % is already stored: postings cannot be added to it', bad.transaction_id
      USING ERRCODE = '55000';
  END IF;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % does not balance in %: debits - credits = %',
      bad.transaction_id, bad.currency, bad.total USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END $$;
