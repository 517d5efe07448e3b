-- Version 10: balance warning emails go out at least once. The warnings job issues a warning as an
-- event (BalanceWarningIssued); the sender mails each such event and records it here only once the
-- mail server accepted it, so a failed sending is tried again on the next round.
CREATE TABLE warning_emails (
  event_position BIGINT PRIMARY KEY,        -- emt_messages.global_position of the BalanceWarningIssued event
  account_id     TEXT NOT NULL,
  level          TEXT NOT NULL,
  sent           TIMESTAMPTZ NOT NULL
);
-- The sender looks for warnings without an email: a handful among all events.
CREATE INDEX IF NOT EXISTS idx_messages_balance_warnings ON emt_messages (global_position)
  WHERE message_type = 'BalanceWarningIssued';
