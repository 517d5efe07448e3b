-- Version 2 → 1: drops the projections (rebuildable from events) and the append-only protection.
DROP TABLE IF EXISTS vms, payments, accounts;
DROP SEQUENCE IF EXISTS payment_ids;
DROP TRIGGER IF EXISTS capsul_append_only ON emt_messages;
DROP TRIGGER IF EXISTS capsul_append_only_delete ON emt_streams;
DROP TRIGGER IF EXISTS capsul_stream_forward_only ON emt_streams;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT tgrelid::regclass AS t FROM pg_trigger WHERE tgname = 'capsul_append_only_truncate' LOOP
    EXECUTE format('DROP TRIGGER capsul_append_only_truncate ON %s', r.t);
  END LOOP;
END $$;
DROP FUNCTION IF EXISTS capsul_refuse_event_change, capsul_stream_forward_only, capsul_projection_guard;
DROP INDEX IF EXISTS idx_messages_global_position, idx_messages_transaction_id_global_position;
