// The host stream as Given / When / Then: an operator registers a VM host with its token (hashed),
// rotates that token, and removes the host once no capsul is left on it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { DeciderSpecification } from '@event-driven-io/emmett';
import {
  decideHost,
  evolveHost,
  initialHost,
  type RegisterHost,
  type RemoveHost,
  type RotateHostToken,
} from '../../src/domain/host/decider.ts';
import type { HostEvent, HostRegistered, HostRemoved, HostTokenRotated } from '../../src/domain/host/events.ts';
import { failsWith } from '../support/domain-error.ts';

const testCause = { by: { kind: 'spoke', id: 'host-a' } } as const;

const given = DeciderSpecification.for({ decide: decideHost, evolve: evolveHost, initialState: initialHost });

const hostId = 'spoke-a';
const t0 = new Date('2026-01-01T00:00:00.000Z');
const after = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
const iso = (date: Date) => date.toISOString();
/** As the adapter stores a token: its SHA-256, in hex. The domain never sees the token itself. */
const hashOf = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');
const firstHash = hashOf('first token');
const secondHash = hashOf('second token');
const memoryMb = 65_536;
const vcpus = 32;

// Commands: time always arrives in the metadata.

type Machine = { memoryMb: number; vcpus: number };
const registerHost = (id = hostId, machine: Partial<Machine> = {}, now = t0): RegisterHost => ({
  type: 'RegisterHost',
  data: { hostId: id, memoryMb, vcpus, ...machine, tokenHash: firstHash },
  metadata: { now, cause: testCause },
});
const rotateHostToken = (tokenHash = secondHash, now = after(3600), id = hostId): RotateHostToken => ({
  type: 'RotateHostToken',
  data: { hostId: id, tokenHash },
  metadata: { now, cause: testCause },
});
const removeHost = (capsulCount = 0, now = after(7200), id = hostId): RemoveHost => ({
  type: 'RemoveHost',
  data: { hostId: id, capsulCount },
  metadata: { now, cause: testCause },
});

// Events, as the decider writes them.

const hostRegistered = (id = hostId, at = t0): HostRegistered => ({
  type: 'HostRegistered',
  data: { hostId: id, memoryMb, vcpus, tokenHash: firstHash, at: iso(at) },
});
const hostTokenRotated = (tokenHash = secondHash, at = after(3600)): HostTokenRotated => ({
  type: 'HostTokenRotated',
  data: { hostId, tokenHash, at: iso(at) },
});
const hostRemoved = (at = after(7200)): HostRemoved => ({ type: 'HostRemoved', data: { hostId, at: iso(at) } });

describe('registering a host', () => {
  it('registers a new host with its size and the hash of its token', () => {
    given([])
      .when(registerHost(hostId, { memoryMb: 65_536, vcpus: 32 }, t0))
      .then([{ type: 'HostRegistered', data: { hostId, memoryMb: 65_536, vcpus: 32, tokenHash: firstHash, at: iso(t0) } }]);
  });

  for (const id of ['a', '7', 'spoke-a', 'rack2-node-14', 'a--b', 'a'.repeat(63)]) {
    it(`accepts the host id ${JSON.stringify(id.length > 20 ? `${id.length} letters` : id)}`, () => {
      given([])
        .when(registerHost(id))
        .then([hostRegistered(id)]);
    });
  }

  for (const id of ['Host_1', 'Spoke-a', 'spoke_a', 'spoke.a', '-a', 'a-', '-', '', 'spoke a', 'spoke-a\n', 'a'.repeat(64)]) {
    it(`refuses the host id ${JSON.stringify(id.length > 20 ? `${id.length} letters` : id)}`, () => {
      given([])
        .when(registerHost(id))
        .thenThrows(failsWith('invalid', /is not a host id: use 1 to 63 lowercase letters, digits and inner dashes$/));
    });
  }

  it('names the refused host id in the message', () => {
    given([])
      .when(registerHost('Host_1'))
      .thenThrows(failsWith('invalid', /^"Host_1" is not a host id: /));
  });

  it('accepts the smallest machine: 1 MiB, 1 vCPU', () => {
    given([])
      .when(registerHost(hostId, { memoryMb: 1, vcpus: 1 }))
      .then([{ type: 'HostRegistered', data: { hostId, memoryMb: 1, vcpus: 1, tokenHash: firstHash, at: iso(t0) } }]);
  });

  for (const memory of [0, -1024, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
    it(`refuses ${memory} MiB of memory`, () => {
      given([])
        .when(registerHost(hostId, { memoryMb: memory }))
        .thenThrows(failsWith('invalid', /^a host's memory is a whole number of MiB from 1 to 67108864$/));
    });
  }

  it('accepts up to 64 TiB of memory and 100 000 vCPUs', () => {
    given([])
      .when(registerHost(hostId, { memoryMb: 64 * 1024 * 1024, vcpus: 100_000 }))
      .then([{ type: 'HostRegistered', data: { hostId, memoryMb: 64 * 1024 * 1024, vcpus: 100_000, tokenHash: firstHash, at: iso(t0) } }]);
  });

  it('refuses more than 64 TiB of memory: a typo', () => {
    given([])
      .when(registerHost(hostId, { memoryMb: 64 * 1024 * 1024 + 1 }))
      .thenThrows(failsWith('invalid', /^a host's memory is a whole number of MiB from 1 to 67108864$/));
  });

  it('refuses more than 100 000 vCPUs: a typo', () => {
    given([])
      .when(registerHost(hostId, { vcpus: 100_001 }))
      .thenThrows(failsWith('invalid', /^a host's vCPUs are a whole number from 1 to 100000$/));
  });

  for (const count of [0, -4, 2.5, Number.NaN]) {
    it(`refuses ${count} vCPUs`, () => {
      given([])
        .when(registerHost(hostId, { vcpus: count }))
        .thenThrows(failsWith('invalid', /^a host's vCPUs are a whole number from 1 to 100000$/));
    });
  }

  it('refuses a host already registered', () => {
    given([hostRegistered()])
      .when(registerHost(hostId, {}, after(60)))
      .thenThrows(failsWith('refused', /^host spoke-a is already registered$/));
  });

  it('refuses a host already registered whose token was rotated', () => {
    given([hostRegistered(), hostTokenRotated()])
      .when(registerHost(hostId, {}, after(4000)))
      .thenThrows(failsWith('refused', /^host spoke-a is already registered$/));
  });

  it('refuses to register a removed host again: its id stays retired', () => {
    given([hostRegistered(), hostRemoved()])
      .when(registerHost(hostId, {}, after(9000)))
      .thenThrows(failsWith('refused', /^host spoke-a was removed; register the machine under a new id$/));
  });
});

describe('rotating a host token', () => {
  it('records the hash of the new token, now', () => {
    given([hostRegistered()])
      .when(rotateHostToken(secondHash, after(3600)))
      .then([{ type: 'HostTokenRotated', data: { hostId, tokenHash: secondHash, at: iso(after(3600)) } }]);
  });

  it('rotates again after a rotation', () => {
    const thirdHash = hashOf('third token');
    given([hostRegistered(), hostTokenRotated()])
      .when(rotateHostToken(thirdHash, after(7200)))
      .then([hostTokenRotated(thirdHash, after(7200))]);
  });

  it('does not find a host never registered', () => {
    given([])
      .when(rotateHostToken())
      .thenThrows(failsWith('not_found', /^there is no host spoke-a$/));
  });

  it('does not find a removed host', () => {
    given([hostRegistered(), hostRemoved()])
      .when(rotateHostToken(secondHash, after(9000)))
      .thenThrows(failsWith('not_found', /^there is no host spoke-a$/));
  });
});

describe('removing a host', () => {
  it('removes a host with no capsul left on it, now', () => {
    given([hostRegistered()])
      .when(removeHost(0, after(7200)))
      .then([{ type: 'HostRemoved', data: { hostId, at: iso(after(7200)) } }]);
  });

  it('refuses while one capsul remains on it', () => {
    given([hostRegistered()])
      .when(removeHost(1))
      .thenThrows(failsWith('refused', /^host spoke-a still has 1 capsul: delete or move/));
  });

  it('refuses while capsuls remain on it, and says how many', () => {
    given([hostRegistered()])
      .when(removeHost(3))
      .thenThrows(failsWith('refused', /^host spoke-a still has 3 capsuls: delete or move them first$/));
  });

  it('does not find a host never registered', () => {
    given([])
      .when(removeHost())
      .thenThrows(failsWith('not_found', /^there is no host spoke-a$/));
  });

  it('does not find a host already removed', () => {
    given([hostRegistered(), hostRemoved()])
      .when(removeHost(0, after(9000)))
      .thenThrows(failsWith('not_found', /^there is no host spoke-a$/));
  });
});

describe('folding a host stream', () => {
  const fold = (events: HostEvent[]) => events.reduce(evolveHost, initialHost());

  it('knows nothing of a host never registered', () => {
    assert.deepEqual(fold([]), { registered: false, removed: false, memoryMb: 0, vcpus: 0, tokenHash: null, drift: new Map() });
  });

  it('keeps the size and the token hash of a registered host', () => {
    assert.deepEqual(fold([hostRegistered()]), {
      registered: true,
      removed: false,
      memoryMb,
      vcpus,
      tokenHash: firstHash,
      drift: new Map(),
    });
  });

  it('keeps only the newest token hash', () => {
    assert.equal(fold([hostRegistered(), hostTokenRotated()]).tokenHash, secondHash);
  });

  it('forgets the token of a removed host, so that no token lets it in', () => {
    assert.deepEqual(fold([hostRegistered(), hostTokenRotated(), hostRemoved()]), {
      registered: true,
      removed: true,
      memoryMb,
      vcpus,
      tokenHash: null,
      drift: new Map(),
    });
  });
});

describe('what the adapter hands the host decider', () => {
  it('refuses a token that is not a SHA-256 hash', () => {
    given([])
      .when({ ...registerHost(hostId), data: { ...registerHost(hostId).data, tokenHash: '' } })
      .thenThrows(failsWith('invalid', /^a host token hash is 64 hex digits \(SHA-256\)$/));
  });

  it('refuses a negative capsul count', () => {
    given([hostRegistered()])
      .when(removeHost(-1))
      .thenThrows(failsWith('invalid', /^a capsul count is a whole number$/));
  });
});

describe('checking drift', () => {
  const check = (seen: string[], expected: string[], known: string[] = seen.filter((id) => expected.includes(id)), now = after(60)) => ({
    type: 'CheckDrift' as const,
    data: { hostId, seen, expected, known },
    metadata: { now, cause: testCause },
  });
  const a = 'capsul-aaaaaaaaaa';
  const b = 'capsul-bbbbbbbbbb';

  it('records nothing when the host and the ledger agree', () => {
    given([hostRegistered()])
      .when(check([a, b], [a, b]))
      .thenNothingHappened();
  });

  it('records a capsul the host runs but the ledger does not have there', () => {
    given([hostRegistered()])
      .when(check([a, b], [a], [a]))
      .then([{ type: 'DriftDetected', data: { hostId, vmId: b, kind: 'unexpected-on-host', at: iso(after(60)) } }]);
  });

  it('records a capsul the ledger has running there but the host does not list', () => {
    given([hostRegistered()])
      .when(check([a], [a, b], [a]))
      .then([{ type: 'DriftDetected', data: { hostId, vmId: b, kind: 'missing-from-host', at: iso(after(60)) } }]);
  });

  it('records an incident once, however often it is seen', () => {
    const detected = { type: 'DriftDetected' as const, data: { hostId, vmId: b, kind: 'missing-from-host' as const, at: iso(after(60)) } };
    given([hostRegistered(), detected])
      .when(check([a], [a, b], [a], after(120)))
      .thenNothingHappened();
  });

  it('records the end of an incident when they agree again', () => {
    const detected = { type: 'DriftDetected' as const, data: { hostId, vmId: b, kind: 'missing-from-host' as const, at: iso(after(60)) } };
    given([hostRegistered(), detected])
      .when(check([a, b], [a, b], [a, b], after(120)))
      .then([
        { type: 'DriftResolved', data: { hostId, vmId: b, kind: 'missing-from-host', detectedAt: iso(after(60)), at: iso(after(120)) } },
      ]);
  });

  it('does not check a host that is not registered', () => {
    given([])
      .when(check([a], []))
      .thenThrows(failsWith('not_found', /^there is no host spoke-a$/));
  });
});
