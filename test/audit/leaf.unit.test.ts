// A leaf's bytes are RFC 8785 canonical JSON of the stored event: the hand-ordered writer used on the hot
// path must give exactly canonicalJson's bytes for the same members, whatever the event holds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { eventLeafHash, leafFormat, leafText } from '../../src/audit/leaf.ts';
import { leafHash } from '../../src/audit/merkle.ts';
import type { StoredEvent } from '../../src/db/event-store.ts';

/** Values capsul stores (JSON as parsed back, I-JSON-exact: no integer beyond 2^53). */
const json = fc
  .jsonValue({ maxDepth: 3 })
  .map((value) => JSON.parse(JSON.stringify(value)) as unknown)
  .filter((value) => {
    try {
      canonicalJson(value);
      return true;
    } catch {
      return false;
    }
  });
const text = fc.string({ unit: 'grapheme', maxLength: 40 });

const storedEvent = fc
  .record({
    globalPosition: fc.bigInt({ min: 1n, max: 2n ** 62n }).map(String),
    streamId: text,
    streamPosition: fc.integer({ min: 1, max: 2 ** 31 }),
    type: text,
    storedData: fc.dictionary(text, json, { maxKeys: 6 }),
    metadata: fc.dictionary(text, json, { maxKeys: 4 }),
    messageId: text,
    recordedAt: text,
  })
  .map((e) => ({ ...e, event: { type: e.type, data: e.storedData } }) as unknown as StoredEvent);

describe("a leaf's bytes", () => {
  it("are canonicalJson of the event's members, byte for byte", () => {
    fc.assert(
      fc.property(storedEvent, (stored) => {
        const expected = canonicalJson({
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
        assert.equal(leafText(stored), expected);
        assert.ok(eventLeafHash(stored).equals(leafHash(Buffer.from(expected, 'utf8'))));
      }),
      { numRuns: 500 },
    );
  });

  it('change when any member changes', () => {
    const base = {
      globalPosition: '2',
      streamId: 'account-1',
      streamPosition: 2,
      event: { type: 'PaymentRecorded' },
      messageId: 'm',
      storedData: { amountCents: 2000, paymentId: 1 },
      metadata: { by: { id: 'alice', kind: 'operator' } },
      recordedAt: '2026-12-07T04:46:53.815952Z',
    } as unknown as StoredEvent;
    const variants: Partial<Record<keyof StoredEvent, unknown>>[] = [
      { globalPosition: '3' },
      { streamId: 'account-2' },
      { streamPosition: 3 },
      { event: { type: 'PaymentInvalidated' } },
      { messageId: 'n' },
      { storedData: { amountCents: 500000, paymentId: 1 } },
      { metadata: { by: { id: 'mallory', kind: 'operator' } } },
      { recordedAt: '2026-12-07T04:46:53.815953Z' },
    ];
    for (const change of variants) assert.notEqual(leafText({ ...base, ...change } as StoredEvent), leafText(base), JSON.stringify(change));
  });
});
