-- Version 13 → 12: drops the log. Refused (by the migration runner) once it holds leaves or checkpoints:
-- those are facts no event holds (which order the events were sealed in, what was signed when).
DROP FUNCTION IF EXISTS capsul_log_add_checkpoint(bigint, bytea, text);
DROP FUNCTION IF EXISTS capsul_log_seal(bigint, bigint[], bytea[]);
DROP FUNCTION IF EXISTS capsul_log_root(bigint);
DROP FUNCTION IF EXISTS capsul_log_subtree(int, bigint);
DROP TABLE IF EXISTS capsul_log_checkpoints, capsul_log_nodes, capsul_log_leaves;
DROP FUNCTION IF EXISTS capsul_refuse_log_change();
