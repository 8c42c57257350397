-- Double-entry ledger. Postings are signed: debit > 0, credit < 0; a transaction's postings sum to
-- zero per currency. The database refuses any transaction that does not balance or has fewer than
-- two postings, and any change to what is stored (corrections are new, reversing transactions).

CREATE TABLE ledger_accounts (
  id text PRIMARY KEY,
  code text NOT NULL UNIQUE,
  type text NOT NULL CHECK (type IN (
    'customer_receivable', 'provider_clearing', 'deferred_revenue', 'revenue', 'tax_payable',
    'customer_credit', 'refunds', 'bad_debt', 'provider_fees', 'disputed_funds', 'transfer_test')),
  owner text,
  currency char(3) NOT NULL,
  normal_side text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
  created_at timestamptz NOT NULL
);

CREATE TABLE ledger_transactions (
  id text PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 300),
  postings_hash text NOT NULL,
  reference text,
  description text,
  reverses text REFERENCES ledger_transactions (id),
  effective_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  -- Constants that let two foreign keys (added below) demand postings 0 and 1: every stored
  -- transaction has at least two postings, checked by the database's own referential triggers.
  first_posting smallint NOT NULL GENERATED ALWAYS AS (0) STORED,
  second_posting smallint NOT NULL GENERATED ALWAYS AS (1) STORED
);
CREATE INDEX ledger_transactions_reference ON ledger_transactions (reference, id) WHERE reference IS NOT NULL;

-- Which transaction and account a posting belongs to (and that it is in the account's currency)
-- is checked by the statement trigger below, set-based, rather than by row-by-row foreign keys:
-- their per-row lookups and key-share locks on account rows cost a third of the throughput.
CREATE TABLE ledger_postings (
  transaction_id text NOT NULL,
  seq smallint NOT NULL CHECK (seq >= 0),
  account_id text NOT NULL,
  currency char(3) NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
  PRIMARY KEY (transaction_id, seq)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id);

-- Running balances, split into slots so that a hot account (revenue, a provider's clearing) is
-- not one row every writer queues on. Balance = sum over the account's slots. Derived data,
-- written only with the postings they sum; the verified trial balance recomputes them.
CREATE TABLE ledger_balance_slots (
  account_id text NOT NULL,
  slot smallint NOT NULL,
  currency char(3) NOT NULL,
  debits_minor bigint NOT NULL CHECK (debits_minor >= 0),
  credits_minor bigint NOT NULL CHECK (credits_minor >= 0),
  PRIMARY KEY (account_id, slot)
);

-- The database checks the rules itself, whatever the code does:
-- 1. every transaction has at least two postings (foreign keys to its postings 0 and 1, checked at
--    the end of the inserting statement);
-- 2. every posting belongs to a stored transaction and to an account in the posting's currency;
-- 3. the postings of a transaction sum to zero in each currency, and
-- 4. postings join a transaction only in the statement that creates it (same xmin), so a stored
--    transaction cannot be extended later, even by a balanced pair
--    (2 to 4: set-based queries once per inserting statement, however many transactions it carries).
-- A transaction and its postings are therefore inserted by one statement: the service uses one
-- INSERT … WITH for the transactions, their postings and their balance slots.
ALTER TABLE ledger_transactions
  ADD CONSTRAINT ledger_transactions_first_posting
    FOREIGN KEY (id, first_posting) REFERENCES ledger_postings (transaction_id, seq),
  ADD CONSTRAINT ledger_transactions_second_posting
    FOREIGN KEY (id, second_posting) REFERENCES ledger_postings (transaction_id, seq);

CREATE FUNCTION ledger_check_new_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT n.transaction_id, n.account_id, n.currency, t.id IS NULL AS orphan INTO bad
    FROM new_postings n
    LEFT JOIN ledger_transactions t ON t.id = n.transaction_id
    LEFT JOIN ledger_accounts a ON a.id = n.account_id AND a.currency = n.currency
    WHERE t.id IS NULL OR a.id IS NULL LIMIT 1;
  IF FOUND AND bad.orphan THEN
    RAISE EXCEPTION 'posting of unknown ledger transaction %', bad.transaction_id USING ERRCODE = '23503';
  END IF;
  IF FOUND THEN
    RAISE EXCEPTION 'posting of ledger transaction % names no % account %', bad.transaction_id, bad.currency, bad.account_id
      USING ERRCODE = '23503';
  END IF;
  SELECT x.transaction_id, x.currency, x.total, x.extended INTO bad FROM (
      SELECT p.transaction_id, p.currency, sum(p.amount_minor) AS total, bool_or(p.xmin <> t.xmin) AS extended
      FROM ledger_postings p
      JOIN ledger_transactions t ON t.id = p.transaction_id
      WHERE p.transaction_id IN (SELECT DISTINCT transaction_id FROM new_postings)
      GROUP BY p.transaction_id, p.currency
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

CREATE TRIGGER ledger_postings_checked AFTER INSERT ON ledger_postings
  REFERENCING NEW TABLE AS new_postings
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_new_postings();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the ledger is append-only: % on % is refused; post a reversing transaction',
    TG_OP, TG_TABLE_NAME USING ERRCODE = '55000';
END $$;

CREATE TRIGGER ledger_accounts_immutable BEFORE UPDATE OR DELETE ON ledger_accounts
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_immutable BEFORE UPDATE OR DELETE ON ledger_postings
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
