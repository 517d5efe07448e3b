-- Version 7: the web app's own state, which is not money and not a capsul's life, so not in the
-- ledger: login links, sessions and the customer's saved SSH keys. Customers are known by their
-- canonical email (lower case) from their first login; their account opens with the first payment.

-- A login link's token is stored only as its SHA-256: the table never holds a usable link.
CREATE TABLE login_tokens (
  token_hash   BYTEA PRIMARY KEY,
  email        TEXT NOT NULL,
  created      TIMESTAMPTZ NOT NULL,
  expires      TIMESTAMPTZ NOT NULL,
  used         TIMESTAMPTZ,             -- set when consumed, and on every other open token of the email then
  return_to    TEXT,                    -- the page to land on after logging in (a path on this site)
  requested_by TEXT                     -- the requesting IP, for the per-IP limit and for support
);
CREATE INDEX login_tokens_email ON login_tokens (email, created);
CREATE INDEX login_tokens_ip ON login_tokens (requested_by, created);

-- A session cookie carries a random id; the table holds its SHA-256.
CREATE TABLE sessions (
  id_hash   BYTEA PRIMARY KEY,
  email     TEXT NOT NULL,
  created   TIMESTAMPTZ NOT NULL,
  last_seen TIMESTAMPTZ NOT NULL,
  expires   TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_email ON sessions (email);

CREATE TABLE ssh_public_keys (
  email   TEXT NOT NULL,
  name    TEXT NOT NULL,
  content TEXT NOT NULL,              -- the canonical key line: type, base64 and comment
  created TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (email, name)
);
