-- Version 6: drift between hosts and the ledger, one row per incident (a projection of DriftDetected /
-- DriftResolved on the host streams).
CREATE TABLE drift (
  id       TEXT PRIMARY KEY,      -- <host>/<kind>/<capsul>/<detected>
  host     TEXT NOT NULL,
  vm_id    TEXT NOT NULL,
  kind     TEXT NOT NULL,         -- unexpected-on-host, missing-from-host
  detected TIMESTAMPTZ NOT NULL,
  resolved TIMESTAMPTZ
);
CREATE INDEX drift_open ON drift (host, vm_id, kind) WHERE resolved IS NULL;

CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON drift FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('drift is recorded by the hub from heartbeats; see capsul drift');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON drift FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');
