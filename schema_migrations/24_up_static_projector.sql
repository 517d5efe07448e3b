-- Version 24: the projector's statements are static, so each session plans them once. Version 21's
-- capsul_apply_projection and capsul_record_history built their UPDATE and row-history statements with
-- EXECUTE format(…), and PostgreSQL parsed and planned them again on every operation: most of what the
-- row history cost an append. capsul_generate_projector() writes both functions from the projection
-- tables as they stand, one branch of plain SQL per table, whose plans plpgsql caches. They do what
-- version 21's did, operation for operation (src/projections/memory.ts mirrors them); two differences
-- in how:
--   * an update writes every column of its row: the row as it was, with the operation's values over it
--     (jsonb_populate_record of the row itself), so one statement serves every set of columns;
--   * a version's row is patched as a record (jsonb_populate_record of the version), not sent through
--     to_jsonb and back whole: only the new values and the two ranges are converted.
-- The column lists are the tables' when generated: a migration that adds a column to a projection calls
-- capsul_generate_projector() again (a test checks that every column is written).
CREATE FUNCTION capsul_generate_projector() RETURNS void LANGUAGE plpgsql AS $gen$
DECLARE
  tbl text;
  columns text;
  names text[] := '{}';
  writes text := '';
  marks text := '';
BEGIN
  -- The projection tables, as capsul_is_projection() knows them (their history tables are not).
  FOR tbl IN SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             WHERE c.relnamespace = 'public'::regnamespace AND t.tgname = 'capsul_projection_guard'
               AND c.relname NOT LIKE '%\_history' ORDER BY c.relname LOOP
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns FROM pg_attribute a
    WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'id';
    names := names || quote_literal(tbl);
    writes := writes || format($w$
    WHEN %1$L THEN
      IF op->>'kind' = 'insert' THEN
        INSERT INTO %1$I SELECT * FROM jsonb_populate_record(NULL::%1$I, vals) ON CONFLICT (id) DO NOTHING;
      ELSE
        UPDATE %1$I t SET (%2$s) = (SELECT %3$s FROM jsonb_populate_record(t, vals) n)
        FROM jsonb_populate_record(NULL::%1$I, vals) s WHERE t.id = s.id;
      END IF;$w$,
      tbl, columns, (SELECT string_agg('n.' || c, ', ') FROM unnest(string_to_array(columns, ', ')) c));
    -- The update: the touched versions, locked; those known before this transaction closed and the
    -- rest dropped; in their place the part before `eff` as it was, and the rest with the new values.
    -- It stays a statement of its own after the table's: the row's lock, taken there, makes a
    -- concurrent append wait, and this statement's snapshot, taken after, sees what that one wrote.
    marks := marks || format($m$
    WHEN %1$L THEN
      IF kind = 'insert' THEN
        INSERT INTO %2$I SELECT r.*, tstzrange(eff, NULL), tstzrange(now(), NULL)
        FROM jsonb_populate_record(NULL::%1$I, vals) r
        WHERE NOT EXISTS (SELECT 1 FROM %2$I h WHERE h.id = r.id AND upper_inf(h.known));
      ELSE
        WITH touched AS (
          SELECT h.ctid AS version, h AS was, lower(h.valid) AS valid_from, upper(h.valid) AS valid_to,
                 lower(h.known) AS known_from, greatest(now(), lower(h.known)) AS known_now
          FROM %2$I h
          WHERE h.id = (SELECT r.id FROM jsonb_populate_record(NULL::%1$I, vals) r) AND upper_inf(h.known)
            AND coalesce(upper(h.valid), 'infinity'::timestamptz) > eff
          FOR UPDATE),
        closed AS (
          UPDATE %2$I h SET known = tstzrange(t.known_from, now()) FROM touched t WHERE h.ctid = t.version AND t.known_from < now()),
        dropped AS (
          DELETE FROM %2$I h USING touched t WHERE h.ctid = t.version AND t.known_from >= now())
        INSERT INTO %2$I
        SELECT v.* FROM touched t CROSS JOIN LATERAL jsonb_populate_record(t.was,
          jsonb_build_object('valid', tstzrange(t.valid_from, eff), 'known', tstzrange(t.known_now, NULL))) v
        WHERE t.valid_from < eff
        UNION ALL
        SELECT v.* FROM touched t CROSS JOIN LATERAL jsonb_populate_record(t.was, (vals - 'id')
          || jsonb_build_object('valid', tstzrange(greatest(t.valid_from, eff), t.valid_to), 'known', tstzrange(t.known_now, NULL))) v;
      END IF;$m$,
      tbl, tbl || '_history');
  END LOOP;

  -- One operation's mark on a row's history, at effective time `eff` ('-infinity' for timeless facts),
  -- known from this transaction's start (now(), the events' `created`): as version 21 says it.
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION capsul_record_history(tbl text, kind text, vals jsonb, eff timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  CASE tbl%s
  END CASE;
END $$;$f$, marks);

  -- Each operation: its table checked, its lookups filled in, its row written, its history marked.
  EXECUTE format($f$
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
    IF tbl IS NULL OR tbl NOT IN (%s) THEN
      RAISE EXCEPTION 'capsul_apply_projection: "%%" is not a projection table', tbl;
    END IF;
    vals := op->'values';
    FOR col, val IN SELECT key, value FROM jsonb_each(op->'lookups') LOOP
      IF val->>'table' = 'accounts' AND val->>'column' = 'email' THEN
        looked_up := (SELECT to_jsonb(email) FROM accounts WHERE id = val->>'id');
      ELSIF capsul_is_projection(val->>'table') THEN
        EXECUTE format('SELECT to_jsonb(%%I) FROM %%I WHERE id::text = $1', val->>'column', val->>'table')
          INTO looked_up USING val->>'id';
      ELSE
        RAISE EXCEPTION 'capsul_apply_projection: cannot look up in "%%"', val->>'table';
      END IF;
      IF looked_up IS NULL OR looked_up = 'null'::jsonb THEN
        RAISE EXCEPTION 'projection: no %% row %% to read %% from', val->>'table', val->>'id', val->>'column';
      END IF;
      vals := jsonb_set(vals, ARRAY[col], looked_up);
    END LOOP;
    IF op->>'kind' IS DISTINCT FROM 'insert' AND op->>'kind' IS DISTINCT FROM 'update' THEN
      RAISE EXCEPTION 'capsul_apply_projection: unknown operation "%%"', op->>'kind';
    END IF;
    CASE tbl%s
    END CASE;
    IF op->>'at' IS NULL THEN
      RAISE EXCEPTION 'capsul_apply_projection: an operation needs its effective time ("at")';
    END IF;
    PERFORM capsul_record_history(tbl, op->>'kind', vals, (op->>'at')::timestamptz);
  END LOOP;
END $$;$f$, array_to_string(names, ', '), writes);
END $gen$;
REVOKE EXECUTE ON FUNCTION capsul_generate_projector() FROM PUBLIC;

SELECT capsul_generate_projector();

-- capsul_append as in version 22, but the history index takes the appended events' positions from
-- emt_append_to_stream's answer instead of reading them back from emt_messages: a read of the
-- partitioned table that PostgreSQL planned again on every append. Its positions come sorted, and
-- they rose with the events in the order given (one INSERT numbers them row by row), so the n-th is
-- the n-th event's.
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
      SELECT owner_account, appended.transaction_id, e.global_position, e.message_type
      FROM unnest(appended.global_positions, p_types) AS e(global_position, message_type);
    END IF;
  END IF;
  RETURN QUERY SELECT appended.success, appended.next_stream_position;
END $$;
