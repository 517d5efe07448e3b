-- Version 23: snapshots of long streams (src/ledger/snapshots.ts). One row per stream: its state folded
-- up to `stream_version`, so a load folds only the events after it. Derived, never a fact: the state is
-- what the events fold to, and a snapshot is used only while the event at its version is still the one it
-- was taken after (`message_id`) and its shape is the code's (`shape_version`); else it is ignored and
-- the stream folded from the start. Not a projection: nothing is rebuilt into it, a load writes it.
CREATE TABLE stream_snapshots (
  stream_id      TEXT PRIMARY KEY,
  stream_version BIGINT NOT NULL CHECK (stream_version > 0),      -- the last event folded into `state`
  message_id     TEXT NOT NULL,                                   -- that event's emt_messages.message_id
  shape_version  INTEGER NOT NULL,                                -- the state's encoding (the decider's snapshot codec)
  state          JSONB NOT NULL,
  taken          TIMESTAMPTZ NOT NULL
);
GRANT INSERT, UPDATE ON stream_snapshots TO capsul_app;
