-- Version 13: the tamper-evident log (docs/audit.md). Every event becomes a leaf of an append-only
-- RFC 6962 Merkle tree, in commit order, once no older transaction is still in flight; signed
-- checkpoints (C2SP tlog-checkpoint notes) fix the tree's root at a size. What privileges cannot stop (a
-- superuser, a restored old backup, a hand-edited dump) no longer matches the signed roots.
--
-- The leaf hashes are computed by capsul (the canonical bytes are RFC 8785 JSON, src/audit/leaf.ts) and
-- recomputed from the events by every verification: these tables are evidence to check, never trusted.

CREATE TABLE capsul_log_leaves (
  leaf_index      BIGINT PRIMARY KEY CHECK (leaf_index >= 0),
  global_position BIGINT NOT NULL UNIQUE,          -- the event's emt_messages.global_position
  leaf_hash       BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32),
  sealed          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The hash of every complete subtree above the leaves (level k, index j covers leaves [j·2^k, (j+1)·2^k)):
-- roots and proofs for any size read O(log n) of them.
CREATE TABLE capsul_log_nodes (
  level      SMALLINT NOT NULL CHECK (level BETWEEN 1 AND 62),
  node_index BIGINT NOT NULL CHECK (node_index >= 0),
  hash       BYTEA NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (level, node_index)
);

CREATE TABLE capsul_log_checkpoints (
  tree_size BIGINT NOT NULL CHECK (tree_size > 0),
  root_hash BYTEA NOT NULL CHECK (octet_length(root_hash) = 32),
  note      TEXT NOT NULL,                         -- the signed note, exactly as signed
  signed    TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Several notes may sign one size (another key, a witness's cosignature, or a forgery that audit
  -- verify reports); none can keep another out.
  PRIMARY KEY (tree_size, note)
);

CREATE FUNCTION capsul_refuse_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'CS002', HINT = 'leaves, tree hashes and checkpoints are never changed once written';
END $$;
REVOKE EXECUTE ON FUNCTION capsul_refuse_log_change() FROM PUBLIC;
CREATE TRIGGER capsul_append_only BEFORE UPDATE OR DELETE ON capsul_log_leaves FOR EACH ROW EXECUTE FUNCTION capsul_refuse_log_change();
CREATE TRIGGER capsul_append_only BEFORE UPDATE OR DELETE ON capsul_log_nodes FOR EACH ROW EXECUTE FUNCTION capsul_refuse_log_change();
CREATE TRIGGER capsul_append_only BEFORE UPDATE OR DELETE ON capsul_log_checkpoints FOR EACH ROW EXECUTE FUNCTION capsul_refuse_log_change();
CREATE TRIGGER capsul_append_only_truncate BEFORE TRUNCATE ON capsul_log_leaves FOR EACH STATEMENT EXECUTE FUNCTION capsul_refuse_log_change();
CREATE TRIGGER capsul_append_only_truncate BEFORE TRUNCATE ON capsul_log_nodes FOR EACH STATEMENT EXECUTE FUNCTION capsul_refuse_log_change();
CREATE TRIGGER capsul_append_only_truncate BEFORE TRUNCATE ON capsul_log_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION capsul_refuse_log_change();

-- The hash of the complete subtree (level, index): a leaf's (level 0) or a stored node's; NULL if absent.
CREATE FUNCTION capsul_log_subtree(p_level int, p_index bigint) RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_level = 0 THEN (SELECT leaf_hash FROM capsul_log_leaves WHERE leaf_index = p_index)
              ELSE (SELECT hash FROM capsul_log_nodes WHERE level = p_level AND node_index = p_index) END
$$;

-- The RFC 6962 root of the tree of the first p_size leaves, from the complete subtrees it is made of
-- (one per 1 bit of the size), folded from the smallest: root = H(A, H(B, C)).
CREATE FUNCTION capsul_log_root(p_size bigint) RETURNS bytea LANGUAGE plpgsql STABLE AS $$
DECLARE
  root bytea;
  subtree bytea;
BEGIN
  IF p_size <= 0 THEN
    RETURN sha256(''::bytea);
  END IF;
  FOR lvl IN 0..62 LOOP
    CONTINUE WHEN (p_size >> lvl) & 1 = 0;
    subtree := capsul_log_subtree(lvl, (p_size >> lvl) - 1);
    IF subtree IS NULL THEN
      RAISE EXCEPTION 'the log''s tree hash %/% is missing: run capsul audit verify', lvl, (p_size >> lvl) - 1 USING ERRCODE = 'CS003';
    END IF;
    root := CASE WHEN root IS NULL THEN subtree ELSE sha256('\x01'::bytea || subtree || root) END;
  END LOOP;
  RETURN root;
END $$;

-- Sealing: the next leaves. Whoever calls it, the database checks what makes leaf order final: the
-- leaves continue the tree where it ends, and they are exactly the next events in commit order
-- (transaction_id, global_position) among those no transaction still in flight can precede. A late
-- committer is never skipped: an event is sealable only once every older transaction has ended, so no
-- event can later appear before it. The tree hashes the leaves complete are computed here, from the
-- stored right edge, so the stored tree is always the tree of the stored leaves.
CREATE FUNCTION capsul_log_seal(p_first_index bigint, p_positions bigint[], p_leaf_hashes bytea[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  size bigint;
  head record;
  expected bigint[];
  n int := coalesce(cardinality(p_positions), 0);
  edge bytea[] := array_fill(NULL::bytea, ARRAY[63]);
  node_levels smallint[] := '{}';
  node_indexes bigint[] := '{}';
  node_hashes bytea[] := '{}';
  leaf bigint;
  hash bytea;
  lvl int;
BEGIN
  IF n = 0 OR coalesce(cardinality(p_leaf_hashes), 0) <> n THEN
    RAISE EXCEPTION 'capsul_log_seal: one leaf hash per event';
  END IF;
  PERFORM pg_advisory_xact_lock(1819240225, 1);   -- "log!" / 1: one sealer at a time
  SELECT coalesce(max(leaf_index) + 1, 0) INTO size FROM capsul_log_leaves;
  IF size <> p_first_index THEN
    RAISE EXCEPTION 'capsul_log_seal: the log has % leaves, not %', size, p_first_index USING ERRCODE = '40001';
  END IF;
  SELECT m.transaction_id, m.global_position INTO head
  FROM capsul_log_leaves l JOIN emt_messages m ON m.global_position = l.global_position
  WHERE l.leaf_index = size - 1;
  IF size > 0 AND head IS NULL THEN
    RAISE EXCEPTION 'capsul_log_seal: the event of leaf % is gone: run capsul audit verify', size - 1 USING ERRCODE = 'CS003';
  END IF;
  SELECT array_agg(global_position ORDER BY transaction_id, global_position) INTO expected FROM (
    SELECT transaction_id, global_position FROM emt_messages
    WHERE partition = 'emt:default' AND NOT is_archived
      AND (size = 0 OR (transaction_id, global_position) > (head.transaction_id, head.global_position))
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, global_position LIMIT n) next;
  IF expected IS DISTINCT FROM p_positions THEN
    RAISE EXCEPTION 'capsul_log_seal: these are not the next events in commit order' USING ERRCODE = '40001';
  END IF;

  -- The right edge: edge[k + 1] is the complete subtree at level k still waiting for its right sibling.
  FOR lvl IN 0..62 LOOP
    CONTINUE WHEN (size >> lvl) & 1 = 0;
    edge[lvl + 1] := capsul_log_subtree(lvl, (size >> lvl) - 1);
    IF edge[lvl + 1] IS NULL THEN
      RAISE EXCEPTION 'capsul_log_seal: the log''s tree hash %/% is missing: run capsul audit verify', lvl, (size >> lvl) - 1 USING ERRCODE = 'CS003';
    END IF;
  END LOOP;
  FOR i IN 1..n LOOP
    leaf := size + i - 1;
    hash := p_leaf_hashes[i];
    IF octet_length(hash) IS DISTINCT FROM 32 THEN
      RAISE EXCEPTION 'capsul_log_seal: a leaf hash is 32 bytes';
    END IF;
    lvl := 0;
    -- A right child completes its parent: hash them together and climb while that keeps happening.
    WHILE (leaf >> lvl) & 1 = 1 LOOP
      hash := sha256('\x01'::bytea || edge[lvl + 1] || hash);
      edge[lvl + 1] := NULL;
      lvl := lvl + 1;
      node_levels := array_append(node_levels, lvl::smallint);
      node_indexes := array_append(node_indexes, leaf >> lvl);
      node_hashes := array_append(node_hashes, hash);
    END LOOP;
    edge[lvl + 1] := hash;
  END LOOP;

  INSERT INTO capsul_log_leaves (leaf_index, global_position, leaf_hash)
    SELECT size + i - 1, p_positions[i], p_leaf_hashes[i] FROM generate_subscripts(p_positions, 1) i;
  INSERT INTO capsul_log_nodes (level, node_index, hash) SELECT * FROM unnest(node_levels, node_indexes, node_hashes);
  RETURN size + n;
END $$;

-- A signed checkpoint, kept as signed, when its root is the log's root at its size (the signature is
-- checked by whoever verifies: the database has no Ed25519). The same note again changes nothing.
CREATE FUNCTION capsul_log_add_checkpoint(p_tree_size bigint, p_root_hash bytea, p_note text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF p_tree_size > (SELECT coalesce(max(leaf_index) + 1, 0) FROM capsul_log_leaves) THEN
    RAISE EXCEPTION 'capsul_log_add_checkpoint: the log has fewer than % leaves', p_tree_size;
  END IF;
  IF capsul_log_root(p_tree_size) IS DISTINCT FROM p_root_hash THEN
    RAISE EXCEPTION 'capsul_log_add_checkpoint: that is not the log''s root at size %', p_tree_size;
  END IF;
  INSERT INTO capsul_log_checkpoints (tree_size, root_hash, note) VALUES (p_tree_size, p_root_hash, p_note)
    ON CONFLICT (tree_size, note) DO NOTHING;
  RETURN FOUND;
END $$;

REVOKE EXECUTE ON FUNCTION capsul_log_subtree(int, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION capsul_log_root(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION capsul_log_seal(bigint, bigint[], bytea[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION capsul_log_add_checkpoint(bigint, bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION capsul_log_subtree(int, bigint) TO capsul_app, capsul_reader;
GRANT EXECUTE ON FUNCTION capsul_log_root(bigint) TO capsul_app, capsul_reader;
GRANT EXECUTE ON FUNCTION capsul_log_seal(bigint, bigint[], bytea[]) TO capsul_app;
GRANT EXECUTE ON FUNCTION capsul_log_add_checkpoint(bigint, bytea, text) TO capsul_app;
