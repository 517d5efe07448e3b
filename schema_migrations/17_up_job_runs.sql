-- Version 17: the last run of each scheduled job, for `capsul status` and monitoring: when it ran,
-- whether it failed (and why), and how many runs in a row have failed. One row per job, replaced by
-- each run that acted (a dry run, or one skipped because another process ran the job, leaves it).
CREATE TABLE job_runs (
  job        TEXT PRIMARY KEY,                                    -- src/jobs/runner.ts jobNames
  started    TIMESTAMPTZ NOT NULL,
  finished   TIMESTAMPTZ NOT NULL,
  outcome    TEXT NOT NULL CHECK (outcome IN ('done', 'failed')),
  error      TEXT,                                                -- the failure's one line
  failures   INTEGER NOT NULL DEFAULT 0                           -- failed runs in a row, up to this one
);
GRANT INSERT, UPDATE ON job_runs TO capsul_app;
