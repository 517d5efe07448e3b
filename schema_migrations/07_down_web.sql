-- Version 7 → 6: drops login links, sessions and saved SSH keys (everyone must log in again).
DROP TABLE IF EXISTS ssh_public_keys;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS login_tokens;
