-- Version 8 → 7: drops the providers' records and the refund columns (the refund events stay in the
-- ledger; a later migrate up and rebuild-projections brings the columns back).
DROP TABLE IF EXISTS payment_receipts;
DROP TABLE IF EXISTS payment_holds;
DROP TABLE IF EXISTS provider_checkouts;
DROP INDEX IF EXISTS payments_account_created;
ALTER TABLE payments DROP COLUMN IF EXISTS refunded_at, DROP COLUMN IF EXISTS refunded_dollars;
