-- Version 11 → 10: back to one all-powerful DATABASE_URL user. The roles stay (they belong to the whole
-- server and other capsul databases may use them); their rights in this database go. No data changes.
DROP TRIGGER IF EXISTS capsul_stream_position_matches_events ON emt_streams;
DROP FUNCTION IF EXISTS capsul_stream_position_matches_events();
DROP FUNCTION IF EXISTS capsul_append(text, text, bigint, text[], text[], jsonb[], jsonb[], jsonb);

ALTER DEFAULT PRIVILEGES FOR ROLE capsul_owner IN SCHEMA public REVOKE SELECT ON TABLES FROM capsul_app, capsul_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE capsul_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM capsul_app, capsul_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM capsul_app, capsul_reader;
REVOKE ALL ON SCHEMA public FROM capsul_owner, capsul_app, capsul_reader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;

DO $$
DECLARE
  object record;
BEGIN
  FOR object IN
    SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
      AND c.relowner = 'capsul_owner'::regrole
      AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I',
                   CASE object.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                   object.name, current_user);
  END LOOP;
  FOR object IN SELECT p.oid::regprocedure AS name FROM pg_proc p
                WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = 'capsul_owner'::regrole LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', object.name, current_user);
  END LOOP;
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    FOR object IN SELECT p.oid::regprocedure AS name FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
             AND (p.proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_put', 'lo_import', 'lo_export', 'lo_unlink',
                                'lowrite', 'lo_truncate', 'lo_truncate64', 'pg_terminate_backend', 'pg_cancel_backend')
                  OR p.proname LIKE 'pg\_%advisory\_%')
    LOOP
      EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM capsul_owner, capsul_app', object.name);
    END LOOP;
    -- Exactly the defaults again: only what PUBLIC could run before.
    FOR object IN SELECT p.oid::regprocedure AS name FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
             AND (p.proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_put', 'lo_unlink', 'lowrite', 'lo_truncate',
                                'lo_truncate64', 'pg_terminate_backend', 'pg_cancel_backend')
                  OR p.proname LIKE 'pg\_%advisory\_%')
    LOOP
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', object.name);
    END LOOP;
  END IF;
END $$;
