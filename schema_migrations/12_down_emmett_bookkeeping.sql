-- Version 12 → 11: drops emmett's bookkeeping (emmett would create it again on its next default open).
DROP FUNCTION IF EXISTS emt_try_acquire_projection_lock(BIGINT, TEXT, TEXT, INT);
DROP TABLE IF EXISTS dmb_migrations;
