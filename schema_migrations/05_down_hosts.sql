-- Version 5 → 4: drops hosts, operations and heartbeats (the host events stay in the ledger).
DROP TABLE IF EXISTS host_heartbeats, operations, hosts;
DROP INDEX IF EXISTS vms_host, vms_waiting_for_host, vms_being_deleted;
