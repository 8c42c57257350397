-- Account credit per customer and currency (ADR 0014), tax included: what a negative invoice (a
-- downgrade's or a pause's unused time) left over, applied first to the customer's next invoices
-- as `credit_applied` lines. The ledger's customer_credit account books the same amounts; this row
-- is the operational balance, locked by the transaction that applies or creates credit.
CREATE TABLE account_credits (
  customer_id text NOT NULL,
  currency char(3) NOT NULL,
  balance_minor bigint NOT NULL CHECK (balance_minor >= 0),
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (customer_id, currency)
);
