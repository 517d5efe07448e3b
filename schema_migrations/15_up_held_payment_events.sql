-- Version 15: a held payment and its closing are events (PaymentHeld, PaymentHoldResolved on the stream
-- hold-<id>, who and why in their metadata), and payment_holds becomes their projection: written only by
-- the projector, so neither capsul_app nor `capsul sql --write` can change a hold any more.
-- Each hold's id is opaque and the same for the same money: the first 32 hex digits of
-- sha256('<provider>/<reference>') (src/domain/hold/events.ts, holdIdOf), so a report delivered again
-- finds its stream. The holds kept so far become events here, appended through capsul_append like any
-- other (and sealed into the signed log like any other); their rows stay as they are, and are what a
-- rebuild of those events gives.
ALTER TABLE payment_holds ADD COLUMN id TEXT;
UPDATE payment_holds SET id = left(encode(sha256(convert_to(provider || '/' || reference, 'UTF8')), 'hex'), 32);
ALTER TABLE payment_holds ALTER COLUMN id SET NOT NULL;
ALTER TABLE payment_holds DROP CONSTRAINT payment_holds_pkey;
ALTER TABLE payment_holds ADD CONSTRAINT payment_holds_pkey PRIMARY KEY (id);
ALTER TABLE payment_holds ADD CONSTRAINT payment_holds_provider_reference_key UNIQUE (provider, reference);

-- The holds' events: PaymentHeld for every hold that has no stream yet, PaymentHoldResolved for every
-- closed one whose stream does not say so (a database taken down to 14 and up again keeps its streams).
-- An instant keeps its microseconds when it has any; who acted is parsed back from "<kind>:<id>".
DO $$
DECLARE
  h record;
  version bigint;
  types text[];
  data jsonb[];
  metadata jsonb[];
  appended record;
BEGIN
  FOR h IN
    SELECT p.*,
           to_char(p.held AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
             || CASE WHEN date_trunc('milliseconds', p.held) = p.held THEN to_char(p.held AT TIME ZONE 'UTC', '.MS')
                     ELSE to_char(p.held AT TIME ZONE 'UTC', '.US') END || 'Z' AS held_at,
           to_char(p.resolved AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
             || CASE WHEN date_trunc('milliseconds', p.resolved) = p.resolved THEN to_char(p.resolved AT TIME ZONE 'UTC', '.MS')
                     ELSE to_char(p.resolved AT TIME ZONE 'UTC', '.US') END || 'Z' AS resolved_at,
           substring(p.resolved_by FROM '^(operator|customer|spoke|job):') AS by_kind,
           substring(p.resolved_by FROM '^(?:operator|customer|spoke|job):(.*)$') AS by_id
    FROM payment_holds p ORDER BY p.held, p.provider, p.reference
  LOOP
    SELECT coalesce((SELECT s.stream_position FROM emt_streams s
                     WHERE s.stream_id = 'hold-' || h.id AND s.partition = 'emt:default' AND NOT s.is_archived), 0)
      INTO version;
    types := ARRAY[]::text[];
    data := ARRAY[]::jsonb[];
    metadata := ARRAY[]::jsonb[];
    IF version = 0 THEN
      types := types || 'PaymentHeld'::text;
      data := data || jsonb_build_object(
        'holdId', h.id, 'provider', h.provider, 'reference', h.reference, 'email', h.email,
        'amountCents', h.amount_cents, 'expectedCents', h.expected_cents, 'at', h.held_at);
      metadata := metadata || jsonb_build_object(
        'by', jsonb_build_object('kind', 'job', 'id', h.provider), 'reason', h.reason, 'eventVersion', 1);
    END IF;
    IF h.resolved IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM emt_messages m WHERE m.stream_id = 'hold-' || h.id AND m.message_type = 'PaymentHoldResolved'
           AND m.partition = 'emt:default' AND NOT m.is_archived) THEN
      types := types || 'PaymentHoldResolved'::text;
      data := data || jsonb_build_object('holdId', h.id, 'at', h.resolved_at);
      metadata := metadata || jsonb_strip_nulls(jsonb_build_object(
        'by', CASE WHEN h.by_kind IS NOT NULL THEN jsonb_build_object('kind', h.by_kind, 'id', h.by_id)
                   WHEN h.resolved_by IS NOT NULL THEN jsonb_build_object('kind', 'operator', 'id', h.resolved_by) END,
        'reason', h.resolution, 'eventVersion', 1));
    END IF;
    CONTINUE WHEN cardinality(types) = 0;
    -- The rows are here already: the events need no projection of their own.
    SELECT * INTO appended FROM capsul_append(
      'hold-' || h.id, 'hold', version,
      ARRAY(SELECT gen_random_uuid()::text FROM generate_series(1, cardinality(types))),
      types, data, metadata, '[]'::jsonb);
    IF NOT appended.success THEN
      RAISE EXCEPTION 'could not append the events of held payment % %', h.provider, h.reference;
    END IF;
  END LOOP;
END $$;

-- From now on only the projector writes it.
REVOKE INSERT, UPDATE ON payment_holds FROM capsul_app;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON payment_holds FOR EACH STATEMENT
  WHEN (current_setting('capsul.projector', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION capsul_projection_guard('held payments are events: use capsul resolve-hold, or the form on /admin/payments');
CREATE TRIGGER capsul_projection_guard_truncate BEFORE TRUNCATE ON payment_holds FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('rebuild projections with capsul rebuild-projections');
