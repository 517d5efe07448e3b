-- Version 11: least privilege. Three roles with distinct jobs, and the database's own privileges as the
-- boundary (docs/database.md, "Who may do what"):
--   capsul_owner   owns every object (DDL, migrations, rebuild). No login of its own by default: the
--                  migration runner acts as it (SET ROLE) from the DATABASE_URL connection.
--   capsul_app     the hub, the spokes' ingest, the jobs and the CLI's commands: reads everything; appends
--                  events (with their projection) only through capsul_append(); writes only the plain
--                  tables it keeps (sessions, login links, heartbeats, saved keys, providers' records).
--   capsul_reader  capsul sql, history, balance, audit: SELECT on capsul's tables, nothing else.
-- Roles belong to the whole PostgreSQL server: every capsul database on it shares these three.
-- This step runs as the DATABASE_URL user (a superuser, or a role with CREATEROLE that may act as
-- capsul_owner); every later step runs as capsul_owner.

DO $$
DECLARE
  wanted record;
BEGIN
  FOR wanted IN SELECT * FROM (VALUES ('capsul_owner', false), ('capsul_app', true), ('capsul_reader', true)) AS r(name, login) LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted.name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                       wanted.name, CASE WHEN wanted.login THEN 'LOGIN' ELSE 'NOLOGIN' END);
      EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migration created it meanwhile
        WHEN insufficient_privilege THEN
          RAISE EXCEPTION 'the role % does not exist and % may not create roles', wanted.name, current_user
            USING HINT = 'run migrations once as a superuser, or create capsul_owner, capsul_app and capsul_reader first (docs/database.md)';
      END;
    END IF;
  END LOOP;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('capsul_app', 'capsul_reader')
             AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication)) THEN
    RAISE EXCEPTION 'capsul_app and capsul_reader must be plain roles (no SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION)';
  END IF;
  IF pg_has_role('capsul_app', 'capsul_owner', 'MEMBER') OR pg_has_role('capsul_reader', 'capsul_owner', 'MEMBER')
     OR pg_has_role('capsul_reader', 'capsul_app', 'MEMBER') THEN
    RAISE EXCEPTION 'capsul_app and capsul_reader must not be members of capsul_owner, nor capsul_reader of capsul_app';
  END IF;
  -- A non-superuser runner needs to act as the owner (SET ROLE, ALTER … OWNER TO).
  IF NOT pg_has_role(current_user, 'capsul_owner', 'MEMBER') THEN
    EXECUTE format('GRANT capsul_owner TO %I', current_user);
  END IF;
END $$;

-- Everything capsul created so far now belongs to capsul_owner.
DO $$
DECLARE
  object record;
BEGIN
  FOR object IN
    SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
      AND c.relowner <> 'capsul_owner'::regrole
      AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO capsul_owner',
                   CASE object.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                   object.name);
  END LOOP;
  FOR object IN
    SELECT p.oid::regprocedure AS name FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> 'capsul_owner'::regrole
  LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO capsul_owner', object.name);
  END LOOP;
END $$;

-- Nobody but the owner creates objects here, and nothing is granted by default.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CREATE, USAGE ON SCHEMA public TO capsul_owner;
GRANT USAGE ON SCHEMA public TO capsul_app, capsul_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
-- (Function defaults only take effect database-wide: a per-schema default can add, never take away.)
ALTER DEFAULT PRIVILEGES FOR ROLE capsul_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Reading: both roles read every table (tables added later too).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO capsul_app, capsul_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE capsul_owner IN SCHEMA public GRANT SELECT ON TABLES TO capsul_app, capsul_reader;

-- Writing: only the plain tables the app keeps, each with only the statements it runs. Events and
-- projections are written by capsul_append alone.
GRANT INSERT, UPDATE ON host_heartbeats TO capsul_app;
GRANT INSERT, UPDATE ON login_tokens TO capsul_app;
GRANT INSERT, UPDATE, DELETE ON sessions TO capsul_app;
GRANT INSERT, DELETE ON ssh_public_keys TO capsul_app;
GRANT INSERT, UPDATE ON provider_checkouts TO capsul_app;
GRANT INSERT, UPDATE ON payment_holds TO capsul_app;
GRANT INSERT ON payment_receipts TO capsul_app;
GRANT INSERT ON warning_emails TO capsul_app;
GRANT USAGE ON SEQUENCE payment_ids TO capsul_app;   -- nextval only; setval needs UPDATE

-- The one way to append: the events (as emmett writes them) and their projection rows, in one call that
-- runs with the owner's rights. search_path is pinned so that no caller's objects stand in for ours.
CREATE FUNCTION capsul_append(
  p_stream_id text, p_stream_type text, p_expected_version bigint,
  p_message_ids text[], p_types text[], p_data jsonb[], p_metadata jsonb[], p_projection jsonb
) RETURNS TABLE (success boolean, next_position bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  appended record;
  n int := cardinality(p_data);
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
  END IF;
  RETURN QUERY SELECT appended.success, appended.next_stream_position;
END $$;
ALTER FUNCTION capsul_append(text, text, bigint, text[], text[], jsonb[], jsonb[], jsonb) OWNER TO capsul_owner;
REVOKE EXECUTE ON FUNCTION capsul_append(text, text, bigint, text[], text[], jsonb[], jsonb[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION capsul_append(text, text, bigint, text[], text[], jsonb[], jsonb[], jsonb) TO capsul_app;

-- A stream's position is the position of its last event: checked at commit, so only an append (which
-- moves both) can move it, whoever runs the UPDATE. The row is read as it stands at commit (a
-- transaction that appends to a stream twice queues a check for each version of the row).
CREATE FUNCTION capsul_stream_position_matches_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT s.stream_position FROM emt_streams s
      WHERE s.stream_id = NEW.stream_id AND s.partition = NEW.partition AND s.is_archived = NEW.is_archived)
     IS DISTINCT FROM (
       SELECT max(m.stream_position) FROM emt_messages m
       WHERE m.stream_id = NEW.stream_id AND m.partition = NEW.partition AND m.is_archived = NEW.is_archived) THEN
    RAISE EXCEPTION 'the event store is append-only: the position of stream % moves only with an append of its events', NEW.stream_id
      USING ERRCODE = 'CS002';
  END IF;
  RETURN NULL;
END $$;
ALTER FUNCTION capsul_stream_position_matches_events() OWNER TO capsul_owner;
REVOKE EXECUTE ON FUNCTION capsul_stream_position_matches_events() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER capsul_stream_position_matches_events AFTER INSERT OR UPDATE ON emt_streams
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION capsul_stream_position_matches_events();

-- Server-side powers that every role has by default and none of capsul's needs: creating large objects
-- (they outlive the session), ending other sessions, and advisory locks (which the hub's jobs and the
-- log's sealer depend on: a reader holding one could stall them). These functions belong to the
-- server's bootstrap superuser, so only a superuser can change who runs them; without one, say so.
DO $$
DECLARE
  f regprocedure;
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RAISE NOTICE 'not a superuser: large-object, pg_terminate_backend and advisory-lock functions keep their default grants (docs/database.md)';
    RETURN;
  END IF;
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND (p.proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_put', 'lo_import', 'lo_export', 'lo_unlink',
                              'lowrite', 'lo_truncate', 'lo_truncate64', 'pg_terminate_backend', 'pg_cancel_backend')
                OR p.proname LIKE 'pg\_%advisory\_%')
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.proname LIKE 'pg\_%advisory\_%'
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO capsul_owner, capsul_app', f);
  END LOOP;
END $$;
