-- Version 16 → 15: drops the record of the jobs' last runs (monitoring only: the next runs write it again).
DROP TABLE IF EXISTS job_runs;
