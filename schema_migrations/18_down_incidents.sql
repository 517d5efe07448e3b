-- Version 18 → 17: back to version 14's record of the operators' emails about vanished capsuls (from the
-- incidents that were mailed), then drops the incidents and the webhook deliveries' record: monitoring
-- only, what version 17 knew of them is kept, and the rest it has no use for.
CREATE TABLE IF NOT EXISTS incident_emails (
  drift_id   TEXT PRIMARY KEY,
  recipients TEXT NOT NULL,
  sent       TIMESTAMPTZ NOT NULL
);
GRANT INSERT ON incident_emails TO capsul_app;
INSERT INTO incident_emails (drift_id, recipients, sent)
SELECT subject, coalesce(recipients, ''), mailed_open FROM incidents WHERE kind = 'vanished' AND mailed_open IS NOT NULL
ON CONFLICT DO NOTHING;
DROP TABLE IF EXISTS incidents;
DROP TABLE IF EXISTS webhook_deliveries;
