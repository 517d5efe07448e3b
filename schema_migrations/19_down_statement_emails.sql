-- Version 19 → 18: drops the record of the statement emails sent (refused while it holds any: which
-- statements a customer was sent is a fact no event holds).
DROP TABLE IF EXISTS statement_emails;
