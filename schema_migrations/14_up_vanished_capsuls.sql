-- Version 14: capsuls that vanish from their host. A host's report of a deletion nobody asked for is
-- recorded as VmVanished on the capsul's stream, and the account ends the capsul's charges at the
-- instant the host saw it gone (VmAccrualEnded, a reaction). The vms projection shows both; the drift
-- projection counts the vanishing as an incident (kind vanished-from-host, id <host>/vanished-from-host/<capsul>:
-- a capsul vanishes once), closed when the host confirms a deletion asked of it since.
ALTER TABLE vms
  ADD COLUMN vanished      TIMESTAMPTZ,   -- when its host saw it gone, unasked (VmVanished)
  ADD COLUMN accrual_ended TIMESTAMPTZ;   -- when the account ended its charges for that (VmAccrualEnded)
-- The reaction looks, every few seconds, for vanished capsuls whose charges the account has not ended yet.
CREATE INDEX vms_vanished_unbilled ON vms (vanished) WHERE vanished IS NOT NULL AND accrual_ended IS NULL;

-- Operators are emailed once per incident: the row is written in the transaction that waits for the
-- mail server to accept the message (src/jobs/mail-once.ts).
CREATE TABLE incident_emails (
  drift_id   TEXT PRIMARY KEY,   -- drift.id of the incident
  recipients TEXT NOT NULL,      -- the ADMIN_EMAILS it went to
  sent       TIMESTAMPTZ NOT NULL
);
GRANT INSERT ON incident_emails TO capsul_app;
