-- Version 21: row history (docs/database.md, "Row history"; docs/audit.md, "Two clocks"). Each projection
-- table <t> gets <t>_history: every version of each of its rows, with two ranges:
--   valid  the effective time it was true in (as the events' `at` say; an account's opening is timeless,
--          valid from -infinity), so a late fact rewrites only the ranges it touches;
--   known  the time the ledger held it (from the transaction that appended the event that made it,
--          until the one that replaced it; open while current).
-- Written only by the projector, in the append's own statement (capsul_apply_projection below), and
-- rebuilt and verified with the tables (capsul rebuild-projections). Left empty here: the rebuild that
-- follows every schema change fills it from the events.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['accounts', 'payments', 'vms', 'hosts', 'operations', 'drift', 'payment_holds'] LOOP
    EXECUTE format('CREATE TABLE %I (LIKE %I, valid tstzrange NOT NULL, known tstzrange NOT NULL)', t || '_history', t);
    -- A row's current versions by where they end: the projector finds those a change at `eff` touches
    -- (ending after it: for facts in order, only the last), and a reader the one holding at an instant,
    -- in one index probe however long the row's history.
    -- (Where a version ends, infinity while open: written the same wherever a query means to use this index.)
    EXECUTE format('CREATE INDEX %I ON %I (id, coalesce(upper(valid), ''infinity''::timestamptz)) WHERE upper_inf(known)',
                   t || '_history_current', t || '_history');
    -- As-of queries: the current versions holding at an instant of effective time. (A query as known at
    -- an earlier instant reads the history whole: an index of both clocks cost appends a quarter of
    -- their speed at a million events.)
    EXECUTE format('CREATE INDEX %I ON %I USING gist (valid) WHERE upper_inf(known)', t || '_history_at', t || '_history');
    EXECUTE format('CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON %I FOR EACH STATEMENT
                    WHEN (current_setting(''capsul.projector'', true) IS DISTINCT FROM ''on'')
                    EXECUTE FUNCTION capsul_projection_guard(''row history is written with each append: rebuild it with capsul rebuild-projections'')',
                   t || '_history');
    EXECUTE format('CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT
                    EXECUTE FUNCTION capsul_projection_guard(''rebuild projections with capsul rebuild-projections'')', t || '_history');
  END LOOP;
END $$;

-- One operation's mark on a row's history, at effective time `eff` ('-infinity' for timeless facts),
-- known from this transaction's start (now(), the events' `created`). An insert starts the row's
-- history unless it has one (as the table's ON CONFLICT DO NOTHING). An update applies to every current
-- version still valid at or after `eff`: the part before `eff` stays as it was, the rest takes the new
-- values; the versions it replaces stop being known now. A version made earlier in this same
-- transaction was never known on its own and is replaced outright. A version is never known before the
-- one it replaces (greatest): two transactions that touch one row are known in the order they applied.
CREATE FUNCTION capsul_record_history(tbl text, kind text, vals jsonb, eff timestamptz) RETURNS void
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
REVOKE EXECUTE ON FUNCTION capsul_record_history(text, text, jsonb, timestamptz) FROM PUBLIC;

-- As version 4's, and each operation also marks its row's history at the operation's `at`.
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
