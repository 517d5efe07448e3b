-- Version 10 → 9: drops the record of warning emails sent (the warnings stay in the ledger).
DROP INDEX IF EXISTS idx_messages_balance_warnings;
DROP TABLE IF EXISTS warning_emails;
