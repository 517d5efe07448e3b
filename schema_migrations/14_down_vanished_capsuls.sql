-- Version 14 → 13: drops the record of incident emails sent (refused by the migration runner once it
-- holds rows: which incidents operators were told of is a fact no event holds) and the vms columns of
-- vanished capsuls (a projection: the events stay in the ledger).
DROP TABLE IF EXISTS incident_emails;
DROP INDEX IF EXISTS vms_vanished_unbilled;
ALTER TABLE vms DROP COLUMN IF EXISTS accrual_ended, DROP COLUMN IF EXISTS vanished;
