-- A market names the seller its invoices show (legal name, address lines joined by newlines, tax
-- id) and the BCP 47 locale its amounts and dates are formatted in. All nullable: markets created
-- before this keep working (their locale reads as the default for their country, their invoices
-- show no seller until one is set). The API bounds each field; these checks are the backstop.
ALTER TABLE markets
  ADD COLUMN locale text CHECK (char_length(locale) BETWEEN 2 AND 64),
  ADD COLUMN seller_legal_name text CHECK (char_length(seller_legal_name) BETWEEN 1 AND 200),
  ADD COLUMN seller_address text CHECK (char_length(seller_address) BETWEEN 1 AND 1000),
  ADD COLUMN seller_tax_id text CHECK (char_length(seller_tax_id) BETWEEN 1 AND 64),
  ADD CONSTRAINT markets_seller_complete CHECK (
    (seller_legal_name IS NULL) = (seller_address IS NULL)
    AND (seller_tax_id IS NULL OR seller_legal_name IS NOT NULL)
  );
