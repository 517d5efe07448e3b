-- Version 1 → 0: removes emmett's event store. Every event is lost: take a pg_dump first.
DROP TABLE IF EXISTS emt_messages, emt_streams, emt_projections, emt_processors CASCADE;
DROP SEQUENCE IF EXISTS emt_global_message_position;
DROP FUNCTION IF EXISTS emt_append_to_stream, emt_add_partition, emt_add_table_partition, emt_sanitize_name,
  emt_try_acquire_processor_lock, emt_release_processor_lock, store_processor_checkpoint,
  emt_register_projection, emt_activate_projection, emt_deactivate_projection;
