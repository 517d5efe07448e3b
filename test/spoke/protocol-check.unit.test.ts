// The wire's field checks on their own: which characters text may hold, cleaning a spoke's own text to
// pass, RFC 3339 times, and reports and heartbeats checked field by field without ever throwing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkHeartbeat, checkReport, checkReportsRequest, cleanText, parseTime, textProblem } from '../../src/spoke/protocol-check.ts';
import type { Report } from '../../src/spoke/protocol.ts';

/** The rule, written out code unit by code unit: what textProblem must refuse. */
function refusedAt(text: string, multiline: boolean): number | null {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const high = code >= 0xd800 && code <= 0xdbff;
    const low = code >= 0xdc00 && code <= 0xdfff;
    if (high) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return i;
    }
    if (low) return i;
    if (multiline && (code === 0x09 || code === 0x0a)) continue;
    if (code <= 0x1f || (code >= 0x7f && code <= 0x9f)) return i;
    if ([0x061c, 0x200e, 0x200f, 0x2028, 0x2029].includes(code) || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069))
      return i;
  }
  return null;
}

const unit = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
  fc.constantFrom(
    '\u0000',
    '\t',
    '\n',
    '\r',
    '\u001b',
    '\u0085',
    '\u202e',
    '\u2066',
    '\u200f',
    '\u2028',
    '\ud800',
    '\udfff',
    '\u{1F600}',
    'a',
    'é',
  ),
);
const anyText = fc.array(unit, { maxLength: 30 }).map((units) => units.join(''));

describe('textProblem', () => {
  it('refuses exactly controls (but tab and line feed in multi-line text), bidi formatting, separators and lone surrogates', () => {
    fc.assert(
      fc.property(anyText, fc.boolean(), (text, multiline) => {
        const at = refusedAt(text, multiline);
        const problem = textProblem(text, multiline);
        if (at === null) assert.equal(problem, null, JSON.stringify(text));
        else assert.match(problem ?? '', new RegExp(`at position ${at}$`), JSON.stringify(text));
      }),
      { numRuns: 2000 },
    );
  });

  it('names the character by its code point, never showing it', () => {
    assert.equal(textProblem('disk\u0000full'), 'contains U+0000 (a control character) at position 4');
    assert.equal(textProblem('a\u202eb'), 'contains U+202E (a bidirectional formatting character) at position 1');
    assert.equal(textProblem('\ud800x'), 'contains a lone surrogate U+D800 at position 0');
    assert.equal(textProblem('a\u2028b'), 'contains U+2028 (a line or paragraph separator) at position 1');
    assert.equal(textProblem('line one\n\tline two', true), null);
    assert.equal(textProblem('line one\r\nline two', true), 'contains U+000D (a control character) at position 8');
    assert.equal(textProblem('emoji \u{1F600} and é are text'), null);
  });
});

describe('cleanText', () => {
  it('always gives text that passes, within the length, and leaves clean short text alone', () => {
    fc.assert(
      fc.property(anyText, fc.integer({ min: 1, max: 40 }), fc.boolean(), (text, maxLength, multiline) => {
        const clean = cleanText(text, maxLength, multiline);
        assert.equal(textProblem(clean, multiline), null, JSON.stringify(clean));
        assert.ok(clean.length <= maxLength, JSON.stringify(clean));
        if (text.length <= maxLength && textProblem(text, multiline) === null) assert.equal(clean, text);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps line structure and marks what it replaced', () => {
    assert.equal(cleanText('a\r\nb\rc\u0000d', 100), 'a\nb\nc\ufffdd');
    assert.equal(cleanText('a\r\nb\tc', 100, false), 'a b c');
    assert.equal(cleanText('ab\u{1F600}cd', 4), 'ab…', 'never half a surrogate pair');
  });
});

describe('parseTime', () => {
  it('reads every time toISOString writes, to the millisecond', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }),
        (date) => {
          assert.equal(parseTime(date.toISOString()), date.getTime());
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('reads offsets and finer fractions, and refuses what is no time', () => {
    assert.equal(parseTime('2026-11-26T12:00:00+14:00'), Date.parse('2026-11-25T22:00:00Z'));
    assert.equal(parseTime('2026-11-26T12:00:04.123999999Z'), Date.parse('2026-11-26T12:00:04.123Z'));
    assert.equal(parseTime('2024-02-29T00:00:00Z'), Date.parse('2024-02-29T00:00:00Z'));
    for (const text of [
      '2026-02-29T00:00:00Z',
      '2026-02-30T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-11-26T24:00:00Z',
      '2026-11-26T12:60:00Z',
      '2026-11-26T12:00:60Z',
      '2026-11-26T12:00:00',
      '2026-11-26t12:00:00z',
      '2026-11-26 12:00:00Z',
      '2026-11-26T12:00:00+24:00',
      '+002026-11-26T12:00:00Z',
      '2026-11-26T12:00:00.Z',
      '2026-11-26T12:00:00Z\n',
      'yesterday',
      '',
    ]) {
      assert.equal(parseTime(text), null, text);
    }
  });
});

describe('checkReport, checkReportsRequest, checkHeartbeat', () => {
  const valid: Report[] = [
    {
      id: '0d4e5f60-aaaa-4bbb-8ccc-123456789abc',
      vmId: 'capsul-k3x9a0b2cd',
      operationId: '5f0c',
      observedAt: '2026-11-26T12:00:04.120Z',
      type: 'provisioned',
      ipv4: '192.0.2.10',
      ipv6: '2001:db8::10',
      sshHostKeys: [{ type: 'ssh-ed25519', sha256: 'SHA256:abc' }],
    },
    {
      id: '9a1b0000',
      vmId: 'capsul-k3x9a0b2cd',
      operationId: null,
      observedAt: '2026-11-26T12:00:04.120Z',
      type: 'state',
      state: 'running',
    },
    {
      id: '9a1b0001',
      vmId: 'capsul-k3x9a0b2cd',
      operationId: null,
      observedAt: '2026-11-26T12:00:04Z',
      type: 'failed',
      error: 'qemu-img: disk full\n\tretry later',
    },
    { id: '9a1b0002', vmId: 'capsul-k3x9a0b2cd', operationId: 'op-1', observedAt: '2026-11-26T12:00:04Z', type: 'deleted' },
  ];

  it('takes every valid report as it is, and drops fields its type does not have', () => {
    for (const report of valid) {
      const checked = checkReport({ ...report, extra: '\u0000', ...(report.type === 'deleted' ? { error: '\u0000' } : {}) });
      assert.deepEqual(checked, { ok: true, value: { report, observedAtMs: Date.parse(report.observedAt) } });
    }
    assert.deepEqual(checkReportsRequest({ reports: valid }), { ok: true, value: valid });
  });

  it('never throws, whatever it is given', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        checkReportsRequest(value);
        checkReportsRequest({ reports: [value] });
        checkHeartbeat(value);
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) checkReport(value as Record<string, unknown>);
      }),
      { numRuns: 1000 },
    );
  });

  it('never takes a report holding text it should not', () => {
    const fields = ['id', 'vmId', 'operationId', 'observedAt', 'state', 'error', 'ipv4'] as const;
    fc.assert(
      fc.property(fc.constantFrom(...valid), fc.constantFrom(...fields), anyText, (report, field, text) => {
        const value = `${String((report as Record<string, unknown>)[field] ?? '')}${text}`;
        const checked = checkReport({ ...report, [field]: value });
        if (checked.ok) {
          const kept = (checked.value.report as Record<string, unknown>)[field];
          if (typeof kept === 'string') assert.equal(textProblem(kept, field === 'error'), null, `${field} ${JSON.stringify(kept)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses a request it cannot answer report by report, naming where', () => {
    assert.deepEqual(checkReportsRequest({ reports: [valid[1], { id: 'short' }] }), {
      ok: false,
      problem: 'reports[1].id must be 8 to 100 characters long',
    });
    assert.deepEqual(checkReportsRequest({ reports: [{ id: 'abcdefgh\u0000' }] }), {
      ok: false,
      problem: 'reports[0].id contains U+0000 (a control character) at position 8',
    });
    assert.deepEqual(checkReportsRequest({ reports: [{ id: 'abc defgh' }] }), {
      ok: false,
      problem: 'reports[0].id must be visible ASCII characters, no spaces',
    });
    assert.deepEqual(checkReportsRequest([]), { ok: false, problem: 'the body must be a JSON object with a list of reports' });
  });

  it("checks a heartbeat field by field and keeps only the protocol's fields", () => {
    const beat = {
      capacity: { memoryMb: 16384, vcpus: 8, gpus: 1 },
      vms: [{ vmId: 'capsul-k3x9a0b2cd', state: 'running', note: 'x' }],
      agentVersion: 'capsul-spoke 0.1.0',
    };
    assert.deepEqual(checkHeartbeat(beat), {
      ok: true,
      value: {
        capacity: { memoryMb: 16384, vcpus: 8 },
        vms: [{ vmId: 'capsul-k3x9a0b2cd', state: 'running' }],
        agentVersion: 'capsul-spoke 0.1.0',
      },
    });
    assert.deepEqual(checkHeartbeat({ ...beat, vms: [{ vmId: 'capsul-k3x9a0b2c\u0000', state: 'running' }] }), {
      ok: false,
      problem: 'vms[0].vmId contains U+0000 (a control character) at position 16',
    });
    assert.deepEqual(checkHeartbeat({ ...beat, agentVersion: 'capsul\u202espoke' }), {
      ok: false,
      problem: 'agentVersion contains U+202E (a bidirectional formatting character) at position 6',
    });
    assert.deepEqual(checkHeartbeat({ ...beat, agentVersion: 'capsul-spoke ü' }), {
      ok: false,
      problem: 'agentVersion must be printable ASCII',
    });
  });
});
