// Two hubs on one database behind the same spokes (issue 10): `node bin/capsul.js serve` twice with
// CAPSUL_MODE=hub, one test database, different ports, and two spokes (simulated driver) each given
// both hubs in HUB_URL (alpha A first, beta B first). While the test keeps creating, paying for and
// deleting capsuls, hub A is killed with SIGKILL, later started again, and then hub B is killed too.
// Afterwards: nothing lost (every acknowledged request reached its end state on its host), nothing
// done twice (each capsul placed, created and provisioned once, on one host; each operation run once
// by one spoke; each payment credited once and its receipt mailed once), the projections equal a
// replay, the audit log verifies, and each spoke said which hub it switched to. Waits are bounded;
// nothing asserts how long anything took.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../src/db/embedded.ts';
import { Hosts } from '../../src/ledger/hosts.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import {
  capsulFacts,
  childEnv,
  countBy,
  isRunning,
  killHard,
  launch,
  outboxReports,
  outputTails,
  readJournal,
  simulatedCapsuls,
  stopHard,
  waitFor,
  type Launched,
} from '../support/fleet.ts';
import { isAlive, runCapsul } from '../support/processes.ts';

/** Every wait in this file is bounded by this; none asserts how long anything took. */
const waitLimitMs = 120_000;
const provisionMs = 500;
const sizeId = 'f1-s'; // 1024 MiB
const hostIds = ['alpha', 'beta'] as const;
type HostId = (typeof hostIds)[number];
type HubName = 'A' | 'B';
const rounds = 8;
const createsPerRound = 3;

let db: TestDatabase;
let scratchDir: string;
const hubPorts = {} as Record<HubName, number>;
const hubs = {} as Partial<Record<HubName, Launched>>;
const spokes = {} as Record<HostId, Launched>;
const tokens = {} as Record<HostId, string>;
const dataDirs = {} as Record<HostId, string>;
const launched: Launched[] = [];

before(async () => {
  db = await testDatabase({ host: false });
  scratchDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-two-hubs-e2e-'));
  const hosts = new Hosts({ pool: db.pool });
  for (const hostId of hostIds) {
    tokens[hostId] = (await hosts.add({ hostId, memoryMb: 16 * 1024, vcpus: 8, cause: operator })).token;
    dataDirs[hostId] = path.join(scratchDir, `spoke-${hostId}`);
  }
  hubPorts.A = await freePort();
  hubPorts.B = await freePort();
  hubs.A = await startHub('A');
  hubs.B = await startHub('B');
  // Each spoke starts on a different hub, so both hubs serve spokes until one dies.
  spokes.alpha = await startSpoke('alpha', ['A', 'B']);
  spokes.beta = await startSpoke('beta', ['B', 'A']);
});

after(async () => {
  await Promise.all(launched.map((proc) => stopHard(proc, waitLimitMs)));
  for (const proc of launched) assert.equal(isAlive(proc.child.pid!), false, `${proc.name} (pid ${proc.child.pid}) is still alive`);
  await db?.close();
  if (scratchDir) rmSync(scratchDir, { recursive: true, force: true });
});
process.once('exit', () => {
  for (const proc of launched) if (isRunning(proc)) proc.child.kill('SIGKILL');
});

describe('two hubs on one database behind the same spokes', () => {
  it(
    'kill -9 one hub mid-load, restart it, kill the other: nothing is lost, nothing is done twice',
    withOutput(async () => {
      const created: string[] = [];
      const deleted: string[] = [];
      const payments: { reference: string; email: string; results: { paymentId: number; duplicate: boolean }[] }[] = [];

      for (let round = 0; round < rounds; round++) {
        if (round === 2) await killHard(hubs.A!, waitLimitMs); // mid-load: operations of rounds 0–1 may still be under way
        if (round === 4) hubs.A = await startHub('A');
        if (round === 6) await killHard(hubs.B!, waitLimitMs);
        const email = `round-${round % 2}@example.org`;
        // A payment delivered twice at once (a provider retrying on the other hub) is credited once.
        const reference = `two-hubs-payment-${round}`;
        const paid = () => db.ledger.recordPayment({ email, amountCents: 5_000, reference, cause: operator });
        payments.push({ reference, email, results: await Promise.all([paid(), paid()]) });
        for (let i = 0; i < createsPerRound; i++) {
          created.push((await db.ledger.createVm({ email, size: sizeId, os: 'debian12', sshPublicKeys: [sshKey], cause: operator })).vmId);
        }
        // One running capsul from an earlier round goes.
        const running = await runningAmong(created.filter((vmId) => !deleted.includes(vmId)));
        if (running[0]) {
          await db.ledger.deleteVm(running[0], { ...operator, reason: 'two-hubs load' });
          deleted.push(running[0]);
        }
        await new Promise((resolve) => setTimeout(resolve, 700));
      }
      assert.ok(deleted.length > 0, 'the load deleted capsuls too');
      const live = created.filter((vmId) => !deleted.includes(vmId));

      // Nothing lost: every capsul reaches its end state.
      const facts = await waitFor(
        `${live.length} capsuls running with an IPv4 and ${deleted.length} deleted`,
        async () => {
          const rows = await capsulFacts(db.pool, created);
          const done = rows.every((row) =>
            deleted.includes(row.id) ? row.state === 'deleted' : row.state === 'running' && row.ipv4 !== null,
          );
          return done && rows;
        },
        waitLimitMs,
      );
      // Nothing done twice: placed, created and provisioned once; deleted once, by one delete operation.
      for (const row of facts) {
        assert.deepEqual(
          {
            placed: row.placed,
            creates: row.creates,
            createsCompleted: row.createsCompleted,
            provisioned: row.provisioned,
            failed: row.failed,
          },
          { placed: 1, creates: 1, createsCompleted: 1, provisioned: 1, failed: 0 },
          row.id,
        );
        const gone = deleted.includes(row.id);
        assert.deepEqual(
          { deletedEvents: row.deletedEvents, deletes: row.deletes },
          { deletedEvents: gone ? 1 : 0, deletes: gone ? 1 : 0 },
          row.id,
        );
      }

      // The hosts agree: each live capsul exists on exactly the host the ledger placed it on, deleted ones nowhere.
      const onHost = (hostId: HostId) => simulatedCapsuls(dataDirs[hostId]).map((capsul) => capsul.vmId);
      const where = Object.fromEntries(facts.map((row) => [row.id, row.host]));
      const listings = { alpha: onHost('alpha'), beta: onHost('beta') };
      for (const vmId of created) {
        const hostsWithIt = hostIds.flatMap((hostId) => listings[hostId].filter((id) => id === vmId).map(() => hostId));
        assert.deepEqual(hostsWithIt, deleted.includes(vmId) ? [] : [where[vmId]], `${vmId} on the hosts`);
      }

      // Each operation run once, by the spoke of its host: started and finished once in that journal, never in the other.
      const { rows: operations } = await db.pool.query(
        `SELECT id, host, completed IS NOT NULL AS completed FROM operations WHERE vm_id = ANY($1::text[]) ORDER BY id`,
        [created],
      );
      assert.ok(
        operations.every((op) => op.completed),
        'every operation completed',
      );
      const journals = { alpha: readJournal(dataDirs.alpha), beta: readJournal(dataDirs.beta) };
      for (const op of operations) {
        for (const hostId of hostIds) {
          const times = (ids: string[]) => ids.filter((id) => id === op.id).length;
          const expected = op.host === hostId ? 1 : 0;
          assert.deepEqual(
            { started: times(journals[hostId].started), finished: times(journals[hostId].finished) },
            { started: expected, finished: expected },
            `operation ${op.id} (host ${op.host}) in ${hostId}'s journal`,
          );
        }
      }
      for (const hostId of hostIds) {
        await waitFor(`an empty outbox on ${hostId}`, async () => outboxReports(dataDirs[hostId]).length === 0, waitLimitMs);
      }

      // Each payment credited once, whichever copy won; its receipt mailed once by one of the hubs (the
      // shared development outbox), unless hub A died between mailing one and recording it (documented).
      const { rows: paymentRows } = await db.pool.query('SELECT id::int AS id, reference FROM payments ORDER BY id');
      assert.deepEqual(
        countBy(paymentRows.map((row) => row.reference as string)),
        Object.fromEntries(payments.map((p) => [p.reference, 1])),
      );
      for (const payment of payments) {
        assert.deepEqual(payment.results.map((r) => r.duplicate).sort(), [false, true], payment.reference);
        assert.equal(payment.results[0]!.paymentId, payment.results[1]!.paymentId, payment.reference);
      }
      const receipts = await waitFor(
        'a receipt for every payment',
        async () => {
          const texts = mailTexts();
          const counts = payments.map((p) => texts.filter((text) => text.includes(p.reference)).length);
          return counts.every((n) => n >= 1) && counts;
        },
        waitLimitMs,
      );
      assert.ok(
        receipts.every((n) => n <= 2) && receipts.filter((n) => n === 2).length <= 1,
        `receipts per payment: ${receipts.join(', ')}`,
      );
      assert.equal(await count('SELECT count(*)::int AS n FROM payment_receipts'), payments.length);

      // The projections equal a replay of the events; the audit log both hubs sealed verifies.
      const verify = await runCapsul(['rebuild-projections', '--verify'], { ...db.env, CAPSUL_DATA_DIR: scratchDir }, waitLimitMs);
      assert.equal(verify.code, 0, verify.stderr);
      assert.match(verify.stdout, /projections match the events/);
      const audit = await runCapsul(['audit', 'verify'], { ...db.env, CAPSUL_DATA_DIR: scratchDir }, waitLimitMs);
      assert.equal(audit.code, 0, `${audit.stdout}\n${audit.stderr}`);
      assert.ok((await count('SELECT count(*)::int AS n FROM capsul_log_checkpoints')) > 0, 'checkpoints were signed and checked');

      // The spokes said where they went, and never printed their token.
      assert.match(spokes.alpha.output(), new RegExp(`switched to hub http://127\\.0\\.0\\.1:${hubPorts.B}/`));
      assert.match(spokes.beta.output(), new RegExp(`switched to hub http://127\\.0\\.0\\.1:${hubPorts.A}/`));
      for (const hostId of hostIds) {
        assert.ok(!spokes[hostId].output().includes(tokens[hostId]), `${hostId}'s token is never printed`);
        assert.ok(isRunning(spokes[hostId]), `spoke ${hostId} still runs`);
      }
    }),
  );
});

// ── processes ─────────────────────────────────────────────────────────────────────────────────────

function track(proc: Launched): Launched {
  launched.push(proc);
  return proc;
}

function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  // Both hubs share CAPSUL_DATA_DIR: one audit key (as docs/operations.md asks), one secret key, one development outbox.
  return childEnv({ CAPSUL_DATA_DIR: scratchDir, ...extra });
}

async function startHub(name: HubName): Promise<Launched> {
  const env = baseEnv({
    CAPSUL_MODE: 'hub',
    ...db.env,
    PORT: String(hubPorts[name]),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    AUDIT_CHECKPOINT_SECONDS: '1',
  });
  const proc = track(launch(`hub ${name}`, ['serve'], env));
  await waitFor(
    `hub ${name} to listen`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`hub ${name} exited with ${proc.child.exitCode}:\n${proc.output()}`);
      return proc.output().includes('capsul hub running at');
    },
    waitLimitMs,
  );
  return proc;
}

/** Starts a spoke given both hubs, in `order`, and waits for its first heartbeat. */
async function startSpoke(hostId: HostId, order: HubName[]): Promise<Launched> {
  const startedAt = new Date();
  const proc = track(
    launch(
      `spoke ${hostId}`,
      ['spoke'],
      baseEnv({
        HUB_URL: order.map((name) => `http://127.0.0.1:${hubPorts[name]}`).join(','),
        SPOKE_HOST_ID: hostId,
        SPOKE_HOST_TOKEN: tokens[hostId],
        SPOKE_DRIVER: 'simulated',
        SPOKE_DATA_DIR: dataDirs[hostId],
        SPOKE_SIMULATED_PROVISION_MS: String(provisionMs),
      }),
    ),
  );
  await waitFor(
    `spoke ${hostId}'s first heartbeat`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`spoke ${hostId} exited with ${proc.child.exitCode}:\n${proc.output()}`);
      const { rows } = await db.pool.query('SELECT 1 FROM host_heartbeats WHERE host_id = $1 AND last_seen >= $2', [hostId, startedAt]);
      return rows.length === 1;
    },
    waitLimitMs,
  );
  return proc;
}

function withOutput(body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body();
    } catch (error) {
      if (error instanceof Error) error.message += `\n${outputTails(launched)}`;
      throw error;
    }
  };
}

// ── the ledger and the files ──────────────────────────────────────────────────────────────────────

async function runningAmong(vmIds: string[]): Promise<string[]> {
  const { rows } = await db.pool.query(`SELECT id FROM vms WHERE id = ANY($1::text[]) AND state = 'running' ORDER BY created, id`, [vmIds]);
  return rows.map((row) => row.id as string);
}

async function count(sql: string): Promise<number> {
  return (await db.pool.query(sql)).rows[0].n as number;
}

/** The readable copies of the emails the hubs wrote to the shared development outbox. */
function mailTexts(): string[] {
  const dir = path.join(scratchDir, 'outbox');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.txt'))
    .map((name) => readFileSync(path.join(dir, name), 'utf8'));
}
