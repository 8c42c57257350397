-- Double-entry ledger. Postings are signed: debit > 0, credit < 0; a transaction's postings sum to
-- zero per currency. The database refuses, at commit, any transaction that does not balance or
-- has fewer than two postings, and refuses any change to what is stored (corrections are new,
-- reversing transactions).

CREATE TABLE ledger_accounts (
  id text PRIMARY KEY,
  code text NOT NULL UNIQUE,
  type text NOT NULL CHECK (type IN (
    'customer_receivable', 'provider_clearing', 'deferred_revenue', 'revenue', 'tax_payable',
    'customer_credit', 'refunds', 'bad_debt', 'provider_fees', 'disputed_funds', 'transfer_test')),
  owner text,
  currency char(3) NOT NULL,
  normal_side text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
  created_at timestamptz NOT NULL,
  UNIQUE (id, currency)
);

CREATE TABLE ledger_transactions (
  id text PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 300),
  postings_hash text NOT NULL,
  reference text,
  description text,
  reverses text REFERENCES ledger_transactions (id),
  effective_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX ledger_transactions_reference ON ledger_transactions (reference, id) WHERE reference IS NOT NULL;

CREATE TABLE ledger_postings (
  transaction_id text NOT NULL REFERENCES ledger_transactions (id),
  seq smallint NOT NULL CHECK (seq >= 0),
  account_id text NOT NULL,
  currency char(3) NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
  PRIMARY KEY (transaction_id, seq),
  -- A posting is in its account's currency, whatever the code does.
  FOREIGN KEY (account_id, currency) REFERENCES ledger_accounts (id, currency)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id);

-- Running balances, split into slots so that a hot account (revenue, a provider's clearing) is
-- not one row every writer queues on. Balance = sum over the account's slots.
CREATE TABLE ledger_balance_slots (
  account_id text NOT NULL REFERENCES ledger_accounts (id),
  slot smallint NOT NULL,
  currency char(3) NOT NULL,
  debits_minor bigint NOT NULL CHECK (debits_minor >= 0),
  credits_minor bigint NOT NULL CHECK (credits_minor >= 0),
  PRIMARY KEY (account_id, slot)
);

CREATE FUNCTION ledger_assert_balanced(txn text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  postings integer;
  unbalanced record;
BEGIN
  SELECT count(*) INTO postings FROM ledger_postings WHERE transaction_id = txn;
  IF postings < 2 THEN
    RAISE EXCEPTION 'ledger transaction % has % posting(s); at least 2 are required', txn, postings
      USING ERRCODE = '23514';
  END IF;
  SELECT currency, sum(amount_minor) AS total INTO unbalanced
    FROM ledger_postings WHERE transaction_id = txn
    GROUP BY currency HAVING sum(amount_minor) <> 0 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % does not balance in %: debits - credits = %',
      txn, unbalanced.currency, unbalanced.total USING ERRCODE = '23514';
  END IF;
END $$;

CREATE FUNCTION ledger_check_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM ledger_assert_balanced(NEW.id);
  RETURN NULL;
END $$;

CREATE FUNCTION ledger_check_posting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM ledger_assert_balanced(NEW.transaction_id);
  RETURN NULL;
END $$;

-- Deferred to commit: the transaction row is inserted before its postings.
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
  AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction();
-- A posting added to a transaction later (in another database transaction) is checked too.
CREATE CONSTRAINT TRIGGER ledger_postings_balanced
  AFTER INSERT ON ledger_postings DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_posting();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the ledger is append-only: % on % is refused; post a reversing transaction',
    TG_OP, TG_TABLE_NAME USING ERRCODE = '55000';
END $$;

CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_immutable BEFORE UPDATE OR DELETE ON ledger_postings
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
