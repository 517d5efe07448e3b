-- Version 6 → 5: drops the drift table (the drift events stay in the ledger).
DROP TABLE IF EXISTS drift;
