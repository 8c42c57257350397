-- The data keys live in the key store now (ADR 0012), so a backup of this database holds no key.
-- Before this runs, startup copies every wrapped key to the key store and clears it here
-- (moveDataKeysToKeyStore); a key still here was not copied, and dropping it would lose that
-- customer's personal data: refuse instead.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM customers WHERE wrapped_data_key IS NOT NULL) THEN
    RAISE EXCEPTION 'customers still hold data keys: start this version with its key store (reprise serve or reprise migrate copy them there first)';
  END IF;
END $$;
ALTER TABLE customers DROP COLUMN wrapped_data_key, DROP COLUMN master_key_id;
ALTER TABLE customers
  ADD CONSTRAINT customers_erased_holds_nothing
  CHECK (erased_at IS NULL OR (email_cipher IS NULL AND name_cipher IS NULL));
