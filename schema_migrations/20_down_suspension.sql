-- Version 20 → 19: the suspension columns go (a projection: AccountSuspended and AccountResumed stay in
-- the ledger, and version 19's code does not know them: it refuses to rebuild from them).
DROP INDEX IF EXISTS idx_messages_suspensions;
DROP INDEX IF EXISTS vms_suspension_work;
DROP INDEX IF EXISTS accounts_suspended;
ALTER TABLE vms DROP COLUMN IF EXISTS start_on_resume, DROP COLUMN IF EXISTS suspended;
ALTER TABLE accounts DROP COLUMN IF EXISTS delete_after, DROP COLUMN IF EXISTS suspended;
