-- Charge attempts of an invoice (ADR 0014, dunning): attempt n's payment is keyed
-- `invoice:<id>:charge` (n = 1) or `invoice:<id>:charge:<n>`, so every retry is a new payment and a
-- retry of the same attempt (a crash, a client's retry) finds the payment it started.
ALTER TABLE invoices ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 1000);
-- The charge job's last step made (0: none, 1: the first charge, r + 1: dunning retry r), so a job
-- run twice (a crash after its charge) settles the attempt it made instead of making another.
ALTER TABLE invoices ADD COLUMN scheduled_attempts integer NOT NULL DEFAULT 0 CHECK (scheduled_attempts BETWEEN 0 AND 1000);
