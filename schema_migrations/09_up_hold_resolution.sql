-- Version 9: an operator closes a held payment that should not be credited (refunded at the
-- provider, a duplicate): who closed it and why. A hold credited by record-payment needs none.
ALTER TABLE payment_holds
  ADD COLUMN resolved_by TEXT,
  ADD COLUMN resolution  TEXT;
