-- Version 12: emmett's own migration bookkeeping, in agreement with the schema version 1 created. An
-- auditor who opens the database with emmett's getPostgreSQLEventStore(url) (default options) then finds
-- every emmett migration applied and changes nothing. The hashes are dumbo's: the SHA-256 (hex) of each
-- of emmett 0.42.0's eventStoreSchemaMigrations' SQL joined with "\n"; test/db/emmett.int.test.ts
-- recomputes them from the installed emmett, so an emmett upgrade that changes them fails loudly.
-- (capsul_reader cannot run emmett's auto-migration at all: it opens with schema.autoMigration 'None',
-- docs/audit.md.) The table definition is dumbo's own migrationTableSQL, verbatim.
CREATE TABLE IF NOT EXISTS dmb_migrations (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    application VARCHAR(255) NOT NULL DEFAULT 'default',
    sql_hash VARCHAR(64) NOT NULL,
    timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO dmb_migrations (name, sql_hash) VALUES
  ('emt:postgresql:eventstore:0.38.7:migrate-events-to-messages', '8cdd2af05e47081fae213dc48e020845bdb384e0ddfd47cab8185b8bb5a64037'),
  ('emt:postgresql:eventstore:0.42.0:from-subscriptions-to-processors', '92e4f894f1d97f6665af1d6a753736d80aa3c41ba465c51a8c18b1671569faa8'),
  ('emt:postgresql:eventstore:0.42.0-2:add-processor-projection-functions', 'cbc4d85089b625360df8ddcb4e8b2fa6654986476ebbd5b00162781b401584a5'),
  ('emt:postgresql:eventstore:initial', '54628492aa411becc6b5f5a71d7464d5a636343bff1ef994e8272710bcabdcfe')
ON CONFLICT (name) DO UPDATE SET sql_hash = EXCLUDED.sql_hash;

-- The one object emmett's migration 0.42.0-2 creates that schemaSQL (version 1) lacks, its text verbatim.
CREATE OR REPLACE FUNCTION emt_try_acquire_projection_lock(
    p_lock_key   BIGINT,
    p_partition  TEXT,
    p_name       TEXT,
    p_version    INT
)
RETURNS TABLE (acquired BOOLEAN, is_active BOOLEAN)
LANGUAGE plpgsql
AS $emt_try_acquire_projection_lock$
BEGIN
    RETURN QUERY
    WITH lock_check AS (
        SELECT pg_try_advisory_xact_lock_shared(p_lock_key) AS acquired
    ),
    status_check AS (
        SELECT status = 'active' AS is_active
        FROM emt_projections
        WHERE partition = p_partition AND name = p_name AND version = p_version
    )
    SELECT
        COALESCE((SELECT lc.acquired FROM lock_check lc), false),
        COALESCE((SELECT sc.is_active FROM status_check sc), true);
END;
$emt_try_acquire_projection_lock$;
-- Policy of capsul's 11_up_roles (no PUBLIC EXECUTE on our functions); harmless before 11.
REVOKE EXECUTE ON FUNCTION emt_try_acquire_projection_lock(BIGINT, TEXT, TEXT, INT) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION emt_try_acquire_projection_lock(BIGINT, TEXT, TEXT, INT) FROM PUBLIC;
