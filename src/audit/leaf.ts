// A leaf's bytes: the event exactly as stored, in RFC 8785 canonical JSON. Everything an auditor needs
// to trust about an event is in it — where it sits in the ledger (global position, stream, position in
// the stream), what it says (type, data and metadata as stored, before any upcasting), and when it was
// recorded — so changing any of it changes the leaf hash.
import type { StoredEvent } from '../db/event-store.ts';
import { canonicalJsonOfParsed } from './canonical.ts';
import { leafHashOfText } from './merkle.ts';

/** Names the leaf layout; a later layout gets a new name, and verifiers know which rule to apply. */
export const leafFormat = 'capsul.event.v1';

export function leafText(stored: StoredEvent): string {
  // The members in RFC 8785's order, written out: only data and metadata need sorting (hot path: every
  // event is hashed again by audit verify and rebuild). test/audit/leaf.unit.test.ts holds it to
  // canonicalJson of the whole object.
  return (
    `{"data":${canonicalJsonOfParsed(stored.storedData)},"format":"${leafFormat}",` +
    `"globalPosition":${JSON.stringify(stored.globalPosition)},"messageId":${JSON.stringify(stored.messageId)},` +
    `"metadata":${canonicalJsonOfParsed(stored.metadata)},"recordedAt":${JSON.stringify(stored.recordedAt)},` +
    `"streamId":${JSON.stringify(stored.streamId)},"streamPosition":"${stored.streamPosition}","type":${JSON.stringify(stored.event.type)}}`
  );
}

export function eventLeafHash(stored: StoredEvent): Buffer {
  return leafHashOfText(leafText(stored));
}
