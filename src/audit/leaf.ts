// A leaf's bytes: the event exactly as stored, in RFC 8785 canonical JSON. Everything an auditor needs
// to trust about an event is in it — where it sits in the ledger (global position, stream, position in
// the stream), what it says (type, data and metadata as stored, before any upcasting), and when it was
// recorded — so changing any of it changes the leaf hash.
import type { StoredEvent } from '../db/event-store.ts';
import { canonicalJson } from './canonical.ts';
import { leafHash } from './merkle.ts';

/** Names the leaf layout; a later layout gets a new name, and verifiers know which rule to apply. */
export const leafFormat = 'capsul.event.v1';

export function leafText(stored: StoredEvent): string {
  return canonicalJson({
    format: leafFormat,
    globalPosition: stored.globalPosition,
    streamId: stored.streamId,
    streamPosition: String(stored.streamPosition),
    type: stored.event.type,
    data: stored.storedData,
    metadata: stored.metadata,
    messageId: stored.messageId,
    recordedAt: stored.recordedAt,
  });
}

export function eventLeafHash(stored: StoredEvent): Buffer {
  return leafHash(Buffer.from(leafText(stored), 'utf8'));
}
