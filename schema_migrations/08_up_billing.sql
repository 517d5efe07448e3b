-- Version 8: billing with payment providers. Refunds reduce a payment's credit (a projection of
-- PaymentRefunded); the providers' own records (checkouts and invoices we opened, payments held for a
-- human to look at, receipts sent) are plain operational tables, not ledger facts: money moves only
-- through events.
ALTER TABLE payments
  ADD COLUMN refunded_dollars NUMERIC(10, 2) NOT NULL DEFAULT 0,  -- the refunded total so far
  ADD COLUMN refunded_at      TIMESTAMPTZ;                          -- when the latest refund was made
-- The balance page lists an account's newest payments: read in order, not sorted.
CREATE INDEX payments_account_created ON payments (account_id, created DESC, id DESC);

-- A Stripe Checkout Session or a BTCPay invoice opened for a customer's top-up, and what became of it.
CREATE TABLE provider_checkouts (
  provider       TEXT NOT NULL,            -- stripe, btcpay
  id             TEXT NOT NULL,            -- the provider's id: cs_… or the BTCPay invoice id
  email          TEXT NOT NULL,
  amount_cents   BIGINT NOT NULL,          -- what the customer asked to pay
  created        TIMESTAMPTZ NOT NULL,
  status         TEXT NOT NULL,            -- open, credited, held, expired, invalid
  status_changed TIMESTAMPTZ NOT NULL,
  payment_id     BIGINT,                   -- the payment it was credited as
  PRIMARY KEY (provider, id)
);
CREATE INDEX provider_checkouts_open ON provider_checkouts (provider, created) WHERE status = 'open';
CREATE INDEX provider_checkouts_email ON provider_checkouts (email, created);

-- Money a provider reported that capsul did not credit on its own (an amount that disagrees with the
-- checkout, a payment for an unknown checkout): an operator decides, e.g. with capsul record-payment.
CREATE TABLE payment_holds (
  provider       TEXT NOT NULL,
  reference      TEXT NOT NULL,            -- the provider's id for the money (payment intent, invoice)
  email          TEXT,
  amount_cents   BIGINT NOT NULL,          -- what the provider says was paid
  expected_cents BIGINT,                   -- what the checkout asked for, when known
  reason         TEXT NOT NULL,
  held           TIMESTAMPTZ NOT NULL,
  resolved       TIMESTAMPTZ,
  PRIMARY KEY (provider, reference)
);

-- One receipt per payment credited: the row is written before the email is sent.
CREATE TABLE payment_receipts (
  payment_id BIGINT PRIMARY KEY,
  sent       TIMESTAMPTZ NOT NULL
);
