-- Version 18: incidents, for operators without a monitoring stack (docs/operations.md, "Alerts").
-- The incidents job (src/jobs/incidents.ts) opens one row when a condition begins (a host offline past a
-- limit, operations or placements waiting past one, a provider's webhooks failing again and again, a
-- job failing runs in a row, drift, a capsul vanished from its host) and clears it when the condition
-- ends; the incident-emails job tells OPS_EMAILS of each opening and each clearing, once. Incidents are
-- observations of the running service, not facts about money or capsuls: rows, not events (drift and
-- vanishings, which are facts, stay events on the host and capsul streams; their incidents point at them).
CREATE TABLE incidents (
  id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         TEXT NOT NULL CHECK (kind IN ('host-offline', 'operations-waiting', 'placement-waiting', 'webhooks-failing',
                                             'job-failing', 'drift', 'vanished')),
  subject      TEXT NOT NULL,           -- what it is about: a host, a provider, a job, a drift id (drift.id)
  opened       TIMESTAMPTZ NOT NULL,
  cleared      TIMESTAMPTZ,             -- NULL while open
  summary      TEXT NOT NULL,           -- one line, as seen when it opened
  details      JSONB NOT NULL DEFAULT '[]'::jsonb,   -- more lines (an array of text), as seen when it opened
  mailed_open  TIMESTAMPTZ,             -- when the operators' email of its opening was accepted by the mail server
  mailed_clear TIMESTAMPTZ,             -- … of its clearing
  recipients   TEXT                     -- OPS_EMAILS the opening went to
);
-- One open incident per condition: a second opening of the same one is a unique violation.
CREATE UNIQUE INDEX incidents_open ON incidents (kind, subject) WHERE cleared IS NULL;
CREATE INDEX incidents_opened ON incidents (opened DESC);
GRANT INSERT, UPDATE ON incidents TO capsul_app;

-- Each payment provider's webhook deliveries, as the hub answered them: the incidents job opens
-- webhooks-failing when `failures` (refused or to be delivered again, in a row) reaches ALERT_WEBHOOK_FAILURES.
CREATE TABLE webhook_deliveries (
  provider    TEXT PRIMARY KEY,
  last_done   TIMESTAMPTZ,              -- the last delivery acted on or acknowledged
  last_failed TIMESTAMPTZ,              -- the last delivery refused (400) or deferred (503)
  failures    INTEGER NOT NULL DEFAULT 0,   -- failed deliveries since the last good one
  last_error  TEXT                      -- why the last failed one failed, one line
);
GRANT INSERT, UPDATE ON webhook_deliveries TO capsul_app;

-- What version 14 recorded of the operators' emails about vanished capsuls becomes their incidents: told
-- when the row says, and an incident closed since (or whose drift is not there any more) is not announced
-- again. A drift id reads <host>/vanished-from-host/<capsul>.
INSERT INTO incidents (kind, subject, opened, cleared, summary, details, mailed_open, mailed_clear, recipients)
SELECT 'vanished', e.drift_id, coalesce(d.detected, e.sent),
       CASE WHEN d.id IS NULL THEN e.sent ELSE d.resolved END,
       format('capsul %s vanished from host %s', split_part(e.drift_id, '/', 3), split_part(e.drift_id, '/', 1)), '[]'::jsonb,
       e.sent, CASE WHEN d.id IS NULL THEN e.sent ELSE d.resolved END, e.recipients
FROM incident_emails e LEFT JOIN drift d ON d.id = e.drift_id;
DROP TABLE incident_emails;
