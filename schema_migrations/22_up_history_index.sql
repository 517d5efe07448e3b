-- Version 22: history pages by index. An account's history page read emt_messages newest first and
-- filtered every row by stream, so a page walked the whole log (3M rows for one page at 3M events).
-- `account_events` lists each account's events (its own stream's and its capsuls' streams') in commit
-- order, so a page is an index range: flat in the size of the log. It is derived from the events alone:
-- written by capsul_append in the append's own statement, backfilled here, rebuilt and verified by
-- `capsul rebuild-projections` from capsul_history_index_from_events(). Events of other streams (hosts,
-- holds) belong to no account and are not listed.
CREATE TABLE account_events (
  account_id      TEXT   NOT NULL,
  transaction_id  XID8   NOT NULL,   -- with global_position: commit order (docs/architecture.md)
  global_position BIGINT NOT NULL,   -- the event's emt_messages.global_position
  message_type    TEXT   NOT NULL    -- so a page of one kind (money, capsuls) is an index range too
);

-- The account each event belongs to, from the events alone: an event on account-<id> is that account's;
-- an event on a capsul's stream vm-<id> is the account's whose VmCreationRequested opened the capsul
-- (the first one, as the vms projection keeps it). The one definition of the index's rows, which the
-- backfill below, rebuild and verify use; capsul_append finds the same account through vms.account_id.
CREATE FUNCTION capsul_history_index_from_events()
RETURNS TABLE (account_id text, transaction_id xid8, global_position bigint, message_type text)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  WITH capsuls AS (
    SELECT DISTINCT ON (c.message_data->>'vmId') 'vm-' || (c.message_data->>'vmId') AS stream_id, c.message_data->>'accountId' AS account_id
    FROM emt_messages c
    WHERE c.message_type = 'VmCreationRequested' AND c.partition = 'emt:default' AND NOT c.is_archived
    ORDER BY c.message_data->>'vmId', c.transaction_id, c.global_position
  )
  SELECT coalesce(c.account_id, substr(m.stream_id, length('account-') + 1)), m.transaction_id, m.global_position, m.message_type
  FROM emt_messages m LEFT JOIN capsuls c ON c.stream_id = m.stream_id
  WHERE m.partition = 'emt:default' AND NOT m.is_archived AND (m.stream_id LIKE 'account-%' OR c.account_id IS NOT NULL)
$$;
ALTER FUNCTION capsul_history_index_from_events() OWNER TO capsul_owner;
REVOKE EXECUTE ON FUNCTION capsul_history_index_from_events() FROM PUBLIC;
-- It only reads: rebuild-projections --verify (capsul_reader) and the tests' checks (capsul_app) call it.
GRANT EXECUTE ON FUNCTION capsul_history_index_from_events() TO capsul_app, capsul_reader;

-- The backfill, then the keys (building an index once is cheaper than maintaining it row by row).
INSERT INTO account_events SELECT * FROM capsul_history_index_from_events();
ALTER TABLE account_events ADD PRIMARY KEY (account_id, transaction_id, global_position);
-- A page of some types: one range of this index per type, merged (src/db/event-store.ts).
CREATE INDEX account_events_by_type ON account_events (account_id, message_type, transaction_id, global_position);

-- Guarded like the projections: only code that set capsul.projector for its transaction (capsul_append,
-- rebuild) writes it. Not named capsul_projection_guard, so capsul_apply_projection, which takes its
-- rows from the app, never writes it: the index comes from the stored events, never from the caller.
CREATE TRIGGER capsul_history_index_guard BEFORE INSERT OR UPDATE OR DELETE ON account_events FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('the history index is written by capsul_append; rebuild it with capsul rebuild-projections');
CREATE TRIGGER capsul_history_index_guard_truncate BEFORE TRUNCATE ON account_events FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild it with capsul rebuild-projections');

-- capsul_append as in version 11, and the appended events listed under their account. The capsul's
-- account comes from vms (its VmCreationRequested on the account's stream is committed before any
-- event of the capsul's own stream); the events' types and positions from the rows just written.
CREATE OR REPLACE FUNCTION capsul_append(
  p_stream_id text, p_stream_type text, p_expected_version bigint,
  p_message_ids text[], p_types text[], p_data jsonb[], p_metadata jsonb[], p_projection jsonb
) RETURNS TABLE (success boolean, next_position bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  appended record;
  n int := cardinality(p_data);
  owner_account text;
BEGIN
  IF p_expected_version IS NULL OR p_expected_version < 0 THEN
    RAISE EXCEPTION 'capsul_append: an expected stream version (0 for a new stream) is required';
  END IF;
  IF n IS NULL OR n = 0 OR cardinality(p_message_ids) <> n OR cardinality(p_types) <> n OR cardinality(p_metadata) <> n THEN
    RAISE EXCEPTION 'capsul_append: one id, type, data and metadata per event';
  END IF;
  SELECT * INTO appended FROM emt_append_to_stream(
    p_message_ids, p_data, p_metadata, array_fill('1'::text, ARRAY[n]), p_types, array_fill('E'::text, ARRAY[n]),
    p_stream_id, p_stream_type, p_expected_version, 'emt:default');
  IF appended.success THEN
    PERFORM capsul_apply_projection(p_projection);
    owner_account := CASE
      WHEN p_stream_id LIKE 'account-%' THEN substr(p_stream_id, length('account-') + 1)
      WHEN p_stream_id LIKE 'vm-%' THEN (SELECT v.account_id FROM vms v WHERE v.id = substr(p_stream_id, length('vm-') + 1))
    END;
    IF owner_account IS NOT NULL THEN
      PERFORM set_config('capsul.projector', 'on', true);
      INSERT INTO account_events (account_id, transaction_id, global_position, message_type)
      SELECT owner_account, m.transaction_id, m.global_position, m.message_type FROM emt_messages m
      WHERE m.stream_id = p_stream_id AND m.partition = 'emt:default' AND NOT m.is_archived AND m.stream_position > p_expected_version;
    END IF;
  END IF;
  RETURN QUERY SELECT appended.success, appended.next_stream_position;
END $$;
