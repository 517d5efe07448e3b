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

CREATE OR REPLACE FUNCTION capsul_apply_projection(ops jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  op jsonb;
  tbl text;
  vals jsonb;
  col text;
  val jsonb;
  looked_up jsonb;
BEGIN
  PERFORM set_config('capsul.projector', 'on', true);
  FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
    tbl := op->>'table';
    IF tbl IS NULL OR tbl NOT IN ('accounts', 'payments', 'vms', 'hosts', 'operations') THEN
      RAISE EXCEPTION 'capsul_apply_projection: "%" is not a projection table', tbl;
    END IF;
    vals := op->'values';
    FOR col, val IN SELECT key, value FROM jsonb_each(op->'lookups') LOOP
      IF val->>'table' = 'accounts' AND val->>'column' = 'email' THEN
        looked_up := (SELECT to_jsonb(email) FROM accounts WHERE id = val->>'id');
      ELSIF val->>'table' IN ('accounts', 'payments', 'vms', 'hosts', 'operations') THEN
        EXECUTE format('SELECT to_jsonb(%I) FROM %I WHERE id::text = $1', val->>'column', val->>'table')
          INTO looked_up USING val->>'id';
      ELSE
        RAISE EXCEPTION 'capsul_apply_projection: cannot look up in "%"', val->>'table';
      END IF;
      IF looked_up IS NULL OR looked_up = 'null'::jsonb THEN
        RAISE EXCEPTION 'projection: no % row % to read % from', val->>'table', val->>'id', val->>'column';
      END IF;
      vals := jsonb_set(vals, ARRAY[col], looked_up);
    END LOOP;
    -- Inserts are static statements (plans cached per session); updates name their columns.
    IF op->>'kind' = 'insert' AND tbl = 'payments' THEN
      INSERT INTO payments SELECT * FROM jsonb_populate_record(NULL::payments, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' AND tbl = 'vms' THEN
      INSERT INTO vms SELECT * FROM jsonb_populate_record(NULL::vms, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' AND tbl = 'accounts' THEN
      INSERT INTO accounts SELECT * FROM jsonb_populate_record(NULL::accounts, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' AND tbl = 'operations' THEN
      INSERT INTO operations SELECT * FROM jsonb_populate_record(NULL::operations, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' AND tbl = 'hosts' THEN
      INSERT INTO hosts SELECT * FROM jsonb_populate_record(NULL::hosts, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'update' THEN
      EXECUTE format('UPDATE %I t SET %s FROM jsonb_populate_record(NULL::%I, $1) s WHERE t.id = s.id',
        tbl,
        (SELECT string_agg(format('%I = s.%I', k, k), ', ') FROM jsonb_object_keys(vals) k WHERE k <> 'id'),
        tbl)
        USING vals;
    ELSE
      RAISE EXCEPTION 'capsul_apply_projection: unknown operation "%"', op->>'kind';
    END IF;
  END LOOP;
END $$;
