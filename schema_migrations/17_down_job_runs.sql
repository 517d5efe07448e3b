-- Version 17 → 16: drops the record of the jobs' last runs (monitoring only: the next runs write it again).
DROP TABLE IF EXISTS job_runs;
