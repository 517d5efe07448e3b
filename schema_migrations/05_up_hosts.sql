-- Version 5: VM hosts, the operations the hub assigns them (both projections of the ledger), and the
-- hosts' heartbeats (operational data, not events: overwritten every few seconds).
CREATE TABLE hosts (
  id         TEXT PRIMARY KEY,
  memory_mb  INT NOT NULL,
  vcpus      INT NOT NULL,
  token_hash TEXT,                 -- SHA-256 of the host's token; NULL once removed
  registered TIMESTAMPTZ NOT NULL,
  removed    TIMESTAMPTZ
);

CREATE TABLE operations (
  id        TEXT PRIMARY KEY,
  vm_id     TEXT NOT NULL,
  host      TEXT NOT NULL,
  kind      TEXT NOT NULL,         -- create, start, stop, force-stop, delete
  created   TIMESTAMPTZ NOT NULL,
  completed TIMESTAMPTZ,           -- when the host reported the outcome
  outcome   TEXT                   -- provisioned, running, stopped, deleted, failed …
);
CREATE INDEX operations_pending ON operations (host, created) WHERE completed IS NULL;
CREATE INDEX operations_vm_id ON operations (vm_id);
CREATE INDEX vms_host ON vms (host);
-- What the hub's reactions look for every few seconds: capsuls waiting for a host, or for deletion.
CREATE INDEX vms_waiting_for_host ON vms (created) WHERE host IS NULL AND deleted IS NULL;
CREATE INDEX vms_being_deleted ON vms (deleted) WHERE deleted IS NOT NULL AND state <> 'deleted';

CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON hosts FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('use capsul add-host, capsul rotate-host-token or capsul remove-host');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON hosts FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON operations FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('operations follow from capsul commands and host reports');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON operations FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');

CREATE TABLE host_heartbeats (
  host_id       TEXT PRIMARY KEY,
  last_seen     TIMESTAMPTZ NOT NULL,
  memory_mb     INT NOT NULL,
  vcpus         INT NOT NULL,
  vms           JSONB NOT NULL,    -- [{"vmId": …, "state": …}] as the host last saw them
  agent_version TEXT NOT NULL
);
