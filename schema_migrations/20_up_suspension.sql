-- Version 20: suspension for nonpayment (docs/billing.md, "Suspend, grace, then delete"). Projections of
-- AccountSuspended and AccountResumed on the account stream: the account's suspension and when deletion
-- comes, each capsul it stopped, and the capsuls a resumption starts again (until their start is asked).
ALTER TABLE accounts
  ADD COLUMN suspended    TIMESTAMPTZ,   -- when the account was suspended; NULL when it is not
  ADD COLUMN delete_after TIMESTAMPTZ;   -- when deletion for nonpayment comes unless funds are added
ALTER TABLE vms
  ADD COLUMN suspended       TIMESTAMPTZ,                  -- when its account's suspension stopped it
  ADD COLUMN start_on_resume BOOLEAN NOT NULL DEFAULT false; -- a resumption asks its start (the hub's reactions)
-- What the reactions look for every few seconds: suspended accounts, and capsuls to stop or start.
CREATE INDEX accounts_suspended ON accounts (suspended) WHERE suspended IS NOT NULL;
CREATE INDEX vms_suspension_work ON vms (id) WHERE suspended IS NOT NULL OR start_on_resume;
-- The warning-emails job mails suspensions and resumptions too (warning_emails.level 'suspended' or
-- 'resumed'): it looks for them among all events as for the warnings.
CREATE INDEX IF NOT EXISTS idx_messages_suspensions ON emt_messages (global_position)
  WHERE message_type IN ('AccountSuspended', 'AccountResumed');
