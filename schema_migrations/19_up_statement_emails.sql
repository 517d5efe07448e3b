-- Version 19: the monthly statement emails (src/jobs/statement-emails.ts). One row per account and month
-- once its statement has been dealt with: mailed (written in the transaction that waits for the mail
-- server, as receipts are, so a refused sending leaves no row and is tried again), or found empty or not
-- wanted (the customer's StatementEmailsChosen on the account stream). The statements themselves are
-- computed from the events whenever they are read; this only records which emails went out.
CREATE TABLE statement_emails (
  account_id TEXT NOT NULL,
  month      TEXT NOT NULL CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),   -- UTC calendar month, 2026-11
  outcome    TEXT NOT NULL CHECK (outcome IN ('sent', 'empty', 'not-wanted')),
  decided    TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (account_id, month)
);
GRANT INSERT ON statement_emails TO capsul_app;
