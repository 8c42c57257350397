-- Invoice numbers in blocks (ADR 0014): a node takes a block of numbers of a series in its own
-- short transaction (the counter row is touched once per block, not once per invoice) and leases
-- them here; finalising an invoice deletes its number's row in the invoice's own transaction. A
-- rollback leaves the row, and a lapsed lease (a node that died, a number given back) lets any node
-- take it again: no number is lost, so the series stays gapless.
CREATE TABLE invoice_number_pool (
  series text NOT NULL REFERENCES invoice_number_series (series),
  number bigint NOT NULL CHECK (number >= 1),
  owner text NOT NULL,
  lease_until timestamptz NOT NULL,
  PRIMARY KEY (series, number)
);
CREATE INDEX invoice_number_pool_lease ON invoice_number_pool (series, lease_until, number);
