-- Revenue recognition and credit notes (ADR 0014).

-- Each charge line's revenue net of tax (the invoice's tax spread over its lines by cumulative
-- rounding, `lineNets`); 0 for `tax` and `credit_applied` lines. Lines stored before this
-- migration keep 0: they were never recognised (recognition starts with this slice).
ALTER TABLE invoice_lines ADD COLUMN net_minor bigint NOT NULL DEFAULT 0;

-- What the daily recognition job sums: one row per line with a net to recognise over its days,
-- written in the transaction that makes it owed: an invoice's charge lines at finalisation, a
-- credit note's unserved part (negative, from the refund's day to the invoice's end), a voided
-- invoice's lines mirrored (negative). Days are UTC day numbers (days since 1970-01-01), day k of
-- n recognising round(net × k/n) − round(net × (k−1)/n), n = last_day − first_day + 1.
-- `scope` is `live` or the test clock id of the customer: each scope is recognised on its own time.
CREATE TABLE recognition_lines (
  source text NOT NULL,
  position smallint NOT NULL,
  invoice_id text NOT NULL REFERENCES invoices (id),
  scope text NOT NULL,
  currency char(3) NOT NULL,
  first_day integer NOT NULL,
  last_day integer NOT NULL,
  net_minor bigint NOT NULL,
  PRIMARY KEY (source, position),
  CHECK (last_day >= first_day AND last_day - first_day < 366)
);
-- The job's read: the lines of a scope still running on a day, index-only.
CREATE INDEX recognition_lines_scope_day ON recognition_lines (scope, last_day)
  INCLUDE (first_day, currency, net_minor);
CREATE INDEX recognition_lines_invoice ON recognition_lines (invoice_id);

-- Per scope, the last day recognised (UTC day number). Created by the first line of a scope (the
-- day before it starts); moved forward only by the recognition job, which holds it locked while it
-- posts, so a line that starts on a day already recognised is caught up by its writer instead.
CREATE TABLE recognition_cursors (
  scope text PRIMARY KEY,
  recognised_through integer NOT NULL,
  updated_at timestamptz NOT NULL
);

-- What was recognised: one row per scope, currency and day (also days that summed to 0).
CREATE TABLE revenue_recognitions (
  scope text NOT NULL,
  currency char(3) NOT NULL,
  day date NOT NULL,
  amount_minor bigint NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (scope, currency, day)
);

-- A refund of an invoice's payment is a credit note on that invoice.
CREATE TABLE credit_notes (
  id text PRIMARY KEY,
  invoice_id text NOT NULL REFERENCES invoices (id),
  refund_id text NOT NULL UNIQUE,
  payment_id text NOT NULL,
  currency char(3) NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  tax_minor bigint NOT NULL,
  net_minor bigint NOT NULL,
  from_deferred_minor bigint NOT NULL CHECK (from_deferred_minor >= 0),
  from_revenue_minor bigint NOT NULL,
  reason text NOT NULL CHECK (reason IN ('requested_by_customer', 'cancellation', 'duplicate',
    'fraudulent', 'product_unsatisfactory')),
  created_at timestamptz NOT NULL,
  CHECK (net_minor = amount_minor - tax_minor AND from_deferred_minor + from_revenue_minor = net_minor)
);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id, id);
