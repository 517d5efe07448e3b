-- Version 9 → 8: drops who closed a held payment and why (when stays in `resolved`).
ALTER TABLE payment_holds DROP COLUMN IF EXISTS resolution, DROP COLUMN IF EXISTS resolved_by;
