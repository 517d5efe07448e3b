-- Version 15 → 14: payment_holds is a plain table again, written by capsul_app, keyed by provider and
-- reference. Its rows stay (at 14 they are facts again); the holds' events stay in the ledger.
DROP TRIGGER IF EXISTS capsul_projection_guard ON payment_holds;
DROP TRIGGER IF EXISTS capsul_projection_guard_truncate ON payment_holds;
ALTER TABLE payment_holds DROP CONSTRAINT payment_holds_pkey;
ALTER TABLE payment_holds DROP CONSTRAINT payment_holds_provider_reference_key;
ALTER TABLE payment_holds ADD CONSTRAINT payment_holds_pkey PRIMARY KEY (provider, reference);
ALTER TABLE payment_holds DROP COLUMN id;
GRANT INSERT, UPDATE ON payment_holds TO capsul_app;
