-- Version 2: the ledger around emmett's store: the read indexes emmett 0.42.0 lacks, append-only event
-- tables, and the projections (accounts, payments, vms) that only capsul's projector may write.

-- The indexes emmett 0.42.4 adds (same names, so a later emmett upgrade skips them).
CREATE INDEX IF NOT EXISTS idx_messages_global_position ON emt_messages (global_position);
CREATE INDEX IF NOT EXISTS idx_messages_transaction_id_global_position ON emt_messages (transaction_id, global_position);

-- Events are facts: corrections are new events, never edits. Row triggers on the partitioned table are
-- cloned onto every partition (present and future); TRUNCATE triggers are per table, so every leaf gets one.
CREATE FUNCTION capsul_refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the event store is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'CS002',
          HINT = 'corrections are new events (e.g. capsul invalidate-payment); to change history on purpose, disable the trigger first';
END $$;

CREATE TRIGGER capsul_append_only BEFORE UPDATE OR DELETE ON emt_messages
  FOR EACH ROW EXECUTE FUNCTION capsul_refuse_event_change();
CREATE TRIGGER capsul_append_only_delete BEFORE DELETE ON emt_streams
  FOR EACH ROW EXECUTE FUNCTION capsul_refuse_event_change();

-- emmett moves a stream's position forward on every append; nothing else may change a stream row.
CREATE FUNCTION capsul_stream_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.stream_id IS DISTINCT FROM OLD.stream_id OR NEW.partition IS DISTINCT FROM OLD.partition
     OR NEW.is_archived IS DISTINCT FROM OLD.is_archived OR NEW.stream_position <= OLD.stream_position THEN
    RAISE EXCEPTION 'the event store is append-only: a stream''s position only moves forward'
      USING ERRCODE = 'CS002';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER capsul_stream_forward_only BEFORE UPDATE ON emt_streams
  FOR EACH ROW EXECUTE FUNCTION capsul_stream_forward_only();

DO $$
DECLARE t regclass;
BEGIN
  FOR t IN
    SELECT c.oid::regclass FROM pg_class c
    WHERE c.relname IN ('emt_messages', 'emt_streams')
       OR c.oid IN (SELECT inhrelid FROM pg_inherits i
                    JOIN pg_class p ON p.oid = i.inhparent
                    WHERE p.relname IN ('emt_messages', 'emt_streams')
                       OR p.oid IN (SELECT inhrelid FROM pg_inherits i2 JOIN pg_class p2 ON p2.oid = i2.inhparent
                                    WHERE p2.relname IN ('emt_messages', 'emt_streams')))
  LOOP
    EXECUTE format('CREATE TRIGGER capsul_append_only_truncate BEFORE TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION capsul_refuse_event_change()', t);
  END LOOP;
END $$;

-- Projections are written only by the projector, which sets capsul.projector for its own transaction.
CREATE FUNCTION capsul_projection_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' OR current_setting('capsul.projector', true) IS DISTINCT FROM 'on' THEN
    RAISE EXCEPTION '% is a projection of the event ledger: only capsul''s projector writes it (% refused)',
      TG_TABLE_NAME, TG_OP
      USING ERRCODE = 'CS001', HINT = TG_ARGV[0];
  END IF;
  RETURN NULL;
END $$;

CREATE TABLE accounts (
  id      TEXT PRIMARY KEY,            -- opaque; the account's events are in stream account-<id>
  email   TEXT NOT NULL UNIQUE,        -- canonical (trimmed, lower case): one account per address
  created TIMESTAMPTZ NOT NULL
);

CREATE TABLE payments (
  id                  BIGINT PRIMARY KEY,
  created             TIMESTAMPTZ NOT NULL,     -- when the money was received (capsul record-payment --at)
  email               TEXT NOT NULL,
  dollars             NUMERIC(10, 2) NOT NULL,
  invalidated         BOOLEAN NOT NULL,
  account_id          TEXT NOT NULL,
  provider            TEXT NOT NULL,            -- manual, stripe, btcpay
  reference           TEXT UNIQUE,              -- the provider's id: recording it again changes nothing
  recorded            TIMESTAMPTZ NOT NULL,     -- when capsul recorded it
  invalidated_at      TIMESTAMPTZ,
  invalidation_reason TEXT
);
CREATE INDEX payments_email ON payments (email);
CREATE INDEX payments_account_id ON payments (account_id);
CREATE SEQUENCE payment_ids;

CREATE TABLE vms (
  id                        TEXT PRIMARY KEY,
  email                     TEXT NOT NULL,
  os                        TEXT NOT NULL,
  size                      TEXT NOT NULL,
  created                   TIMESTAMPTZ NOT NULL,
  deleted                   TIMESTAMPTZ,          -- when deletion was requested: billing stops here
  last_seen_ipv4            TEXT,
  last_seen_ipv6            TEXT,
  host                      TEXT,
  state                     TEXT NOT NULL,        -- follows the host: pending, running, stopped, deleted, failed …
  account_id                TEXT NOT NULL,
  dollars_per_month         NUMERIC(8, 2) NOT NULL, -- the price captured at creation
  ssh_public_keys           TEXT[] NOT NULL,
  ssh_host_key_fingerprints JSONB,
  state_observed            TIMESTAMPTZ,
  deletion_reason           TEXT,
  failure                   TEXT
);
CREATE INDEX vms_email ON vms (email);
CREATE INDEX vms_account_id ON vms (account_id);

CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON accounts FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('accounts open with their first payment: use capsul record-payment');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON accounts FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON payments FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('use capsul record-payment, capsul invalidate-payment or capsul reinstate-payment');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON payments FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON vms FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('use capsul create-vm or capsul delete-vm');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON vms FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');
