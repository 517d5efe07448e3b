-- Version 4: the projector writes each append's projection changes in one round trip. The row
-- operations come from src/projections/project.ts (where the rules live); this function only applies
-- them: inserts (ON CONFLICT (id) DO NOTHING) and updates by id, with identifiers quoted and values
-- bound, after filling each `lookups` column from a row already projected. Only projection tables
-- (those with the capsul_projection_guard trigger) are accepted; every one is keyed by `id`.
-- A projection table is one that carries the projector's guard: adding a projection in a later version
-- needs no change here.
-- (plpgsql, so its query plan is cached per session.)
CREATE FUNCTION capsul_is_projection(tbl text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                 WHERE c.relname = tbl AND c.relnamespace = 'public'::regnamespace AND t.tgname = 'capsul_projection_guard');
END $$;

CREATE FUNCTION capsul_apply_projection(ops jsonb) RETURNS void LANGUAGE plpgsql AS $$
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
    IF NOT capsul_is_projection(tbl) THEN
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
  END LOOP;
END $$;

-- The guards' conditions move into WHEN clauses, evaluated without calling a function: appends and
-- projector writes no longer pay for a trigger call, and everything else is refused as before.
DROP TRIGGER capsul_stream_forward_only ON emt_streams;
CREATE TRIGGER capsul_stream_forward_only BEFORE UPDATE ON emt_streams FOR EACH ROW
  WHEN (NEW.stream_id IS DISTINCT FROM OLD.stream_id OR NEW.partition IS DISTINCT FROM OLD.partition
        OR NEW.is_archived IS DISTINCT FROM OLD.is_archived OR NEW.stream_position <= OLD.stream_position)
  EXECUTE FUNCTION capsul_stream_forward_only();

DROP TRIGGER capsul_projection_guard ON accounts;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON accounts FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('accounts open with their first payment: use capsul record-payment');
DROP TRIGGER capsul_projection_guard ON payments;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON payments FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('use capsul record-payment, capsul invalidate-payment or capsul reinstate-payment');
DROP TRIGGER capsul_projection_guard ON vms;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON vms FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('use capsul create-vm or capsul delete-vm');
