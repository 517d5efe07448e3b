-- Version 24 → 23: the projector's functions are version 21's again, and capsul_append version 22's,
-- word for word (their statements built and planned on every call); the generator goes.
DROP FUNCTION capsul_generate_projector();

CREATE OR REPLACE FUNCTION capsul_record_history(tbl text, kind text, vals jsonb, eff timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  hist text := tbl || '_history';
BEGIN
  IF kind = 'insert' THEN
    EXECUTE format(
      'INSERT INTO %1$I SELECT (s.r).*, tstzrange($2, NULL), tstzrange(now(), NULL)
       FROM (SELECT jsonb_populate_record(NULL::%2$I, $1) AS r) s
       WHERE NOT EXISTS (SELECT 1 FROM %1$I h WHERE h.id = (s.r).id AND upper_inf(h.known))', hist, tbl)
      USING vals, eff;
    RETURN;
  END IF;
  -- One statement (planned once a call): the touched versions, locked; those known before this
  -- transaction closed and the rest dropped; in their place the part before `eff` as it was, and the
  -- rest with the new values.
  EXECUTE format(
    'WITH touched AS (
       SELECT h.ctid AS version, to_jsonb(h) AS row, lower(h.valid) AS valid_from, upper(h.valid) AS valid_to,
              lower(h.known) AS known_from, greatest(now(), lower(h.known)) AS known_now
       FROM %1$I h
       WHERE h.id = (SELECT r.id FROM jsonb_populate_record(NULL::%2$I, $1) r) AND upper_inf(h.known)
         AND coalesce(upper(h.valid), ''infinity''::timestamptz) > $2
       FOR UPDATE),
     closed AS (
       UPDATE %1$I h SET known = tstzrange(t.known_from, now()) FROM touched t WHERE h.ctid = t.version AND t.known_from < now()),
     dropped AS (
       DELETE FROM %1$I h USING touched t WHERE h.ctid = t.version AND t.known_from >= now())
     INSERT INTO %1$I
     SELECT v.* FROM touched t CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$I, t.row
       || jsonb_build_object(''valid'', tstzrange(t.valid_from, $2), ''known'', tstzrange(t.known_now, NULL))) v
     WHERE t.valid_from < $2
     UNION ALL
     SELECT v.* FROM touched t CROSS JOIN LATERAL jsonb_populate_record(NULL::%1$I, t.row || ($1 - ''id'')
       || jsonb_build_object(''valid'', tstzrange(greatest(t.valid_from, $2), t.valid_to), ''known'', tstzrange(t.known_now, NULL))) v',
    hist, tbl)
    USING vals, eff;
END $$;

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
    IF NOT capsul_is_projection(tbl) OR tbl LIKE '%\_history' THEN
      RAISE EXCEPTION 'capsul_apply_projection: "%" is not a projection table', tbl;
    END IF;
    vals := op->'values';
    FOR col, val IN SELECT key, value FROM jsonb_each(op->'lookups') LOOP
      IF val->>'table' = 'accounts' AND val->>'column' = 'email' THEN
        looked_up := (SELECT to_jsonb(email) FROM accounts WHERE id = val->>'id');
      ELSIF capsul_is_projection(val->>'table') THEN
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
    -- The busiest inserts are static statements (plans cached per session); others are built here.
    IF op->>'kind' = 'insert' AND tbl = 'payments' THEN
      INSERT INTO payments SELECT * FROM jsonb_populate_record(NULL::payments, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' AND tbl = 'vms' THEN
      INSERT INTO vms SELECT * FROM jsonb_populate_record(NULL::vms, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' AND tbl = 'accounts' THEN
      INSERT INTO accounts SELECT * FROM jsonb_populate_record(NULL::accounts, vals) ON CONFLICT (id) DO NOTHING;
    ELSIF op->>'kind' = 'insert' THEN
      EXECUTE format('INSERT INTO %I SELECT * FROM jsonb_populate_record(NULL::%I, $1) ON CONFLICT (id) DO NOTHING', tbl, tbl)
        USING vals;
    ELSIF op->>'kind' = 'update' THEN
      EXECUTE format('UPDATE %I t SET %s FROM jsonb_populate_record(NULL::%I, $1) s WHERE t.id = s.id',
        tbl,
        (SELECT string_agg(format('%I = s.%I', k, k), ', ') FROM jsonb_object_keys(vals) k WHERE k <> 'id'),
        tbl)
        USING vals;
    ELSE
      RAISE EXCEPTION 'capsul_apply_projection: unknown operation "%"', op->>'kind';
    END IF;
    IF op->>'at' IS NULL THEN
      RAISE EXCEPTION 'capsul_apply_projection: an operation needs its effective time ("at")';
    END IF;
    PERFORM capsul_record_history(tbl, op->>'kind', vals, (op->>'at')::timestamptz);
  END LOOP;
END $$;

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
