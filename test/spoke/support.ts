// Shared pieces of the spoke tests: a clock far from the real one, a bounded wait, operations and agents.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SpokeAgent, type SpokeAgentOptions } from '../../src/spoke/agent.ts';
import { abortableDelay, type Clock } from '../../src/spoke/clock.ts';
import { HubClient } from '../../src/spoke/hub-client.ts';
import type { Operation, OperationKind } from '../../src/spoke/protocol.ts';
import type { FakeDriver } from './fake-driver.ts';
import type { FakeHub } from './fake-hub.ts';

/** Times the spoke reports come from this clock: 2031, so they cannot be mistaken for the real time. */
export const clockStartMs = Date.parse('2031-01-01T00:00:00.000Z');
export function testClock(): Clock {
  const realStartMs = Date.now();
  return { nowMs: () => clockStartMs + (Date.now() - realStartMs), sleep: abortableDelay };
}

/** Polls `condition` until it holds; fails after `timeoutMs` naming what it waited for. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function tempDataDir(): { dir: string; remove: () => void } {
  const parent = mkdtempSync(path.join(os.tmpdir(), 'capsul-spoke-'));
  return { dir: path.join(parent, 'data'), remove: () => rmSync(parent, { recursive: true, force: true }) };
}

export function outboxFiles(dataDir: string): string[] {
  const dir = path.join(dataDir, 'outbox');
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.json')) : [];
}

/** The reports set aside in outbox-rejected/ (their reasons beside them are not counted). */
export function setAsideFiles(dataDir: string): string[] {
  const dir = path.join(dataDir, 'outbox-rejected');
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((name) => name.endsWith('.json'))
        .sort()
    : [];
}

let vmCounter = 0;
/** A capsul id as the hub makes them. */
export function newVmId(): string {
  return `capsul-${String(++vmCounter).padStart(4, '0')}${randomUUID().replace(/-/g, '').slice(0, 6)}`;
}

export function operation(kind: OperationKind, vmId: string): Operation {
  return {
    id: randomUUID(),
    kind,
    vmId,
    createdAt: new Date(clockStartMs).toISOString(),
    ...(kind === 'create'
      ? { spec: { memoryMb: 1024, vcpus: 1, imageFile: 'debian-12.qcow2', sshPublicKeys: ['ssh-ed25519 AAAAC3Nz test@example'] } }
      : {}),
  };
}

/** Loop timings small enough for tests; the behaviour is the production one. */
export const fastTimings = {
  heartbeatIntervalMs: 40,
  pollWaitMs: 300,
  pollIdleMs: 20,
  watchIntervalMs: 5,
  watchTimeoutMs: 3_000,
  backoffBaseMs: 10,
  backoffCapMs: 100,
  stopGraceMs: 200,
} satisfies Partial<SpokeAgentOptions>;

export type TestAgent = { agent: SpokeAgent; lines: string[] };

export function newAgent(hub: FakeHub, driver: FakeDriver, dataDir: string, options: Partial<SpokeAgentOptions> = {}): TestAgent {
  const lines: string[] = [];
  const client = new HubClient({ hubUrl: hub.url, hostId: hub.hostId, token: hub.token, requestTimeoutMs: 2_000 });
  const agent = new SpokeAgent({
    hub: client,
    driver,
    dataDir,
    log: (line) => lines.push(line),
    clock: testClock(),
    agentVersion: 'capsul-spoke/test',
    ...fastTimings,
    ...options,
  });
  return { agent, lines };
}
