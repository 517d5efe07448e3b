-- Version 22 → 21: the history index goes (it is derived from the events: a later up step backfills it
-- again) and capsul_append is again version 11's, word for word.
DROP TABLE account_events;
DROP FUNCTION capsul_history_index_from_events();

CREATE OR REPLACE FUNCTION capsul_append(
  p_stream_id text, p_stream_type text, p_expected_version bigint,
  p_message_ids text[], p_types text[], p_data jsonb[], p_metadata jsonb[], p_projection jsonb
) RETURNS TABLE (success boolean, next_position bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  appended record;
  n int := cardinality(p_data);
BEGIN
  IF p_expected_version IS NULL OR p_expected_version < 0 THEN
    RAISE EXCEPTION 'capsul_append: an expected stream version (0 for a new stream) is required';
  END IF;
  IF n IS NULL OR n = 0 OR cardinality(p_message_ids) <> n OR cardinality(p_types) <> n OR cardinality(p_metadata) <> n THEN
    RAISE EXCEPTION 'capsul_append: one id, type, data and metadata per event';
  END IF;
  SELECT * INTO appended FROM emt_append_to_stream(
    p_message_ids, p_data, p_metadata, array_fill('1'::text, ARRAY[n]), p_types, array_fill('E'::text, ARRAY[n]),
    p_stream_id, p_stream_type, p_expected_version, 'emt:default');
  IF appended.success THEN
    PERFORM capsul_apply_projection(p_projection);
  END IF;
  RETURN QUERY SELECT appended.success, appended.next_stream_position;
END $$;
