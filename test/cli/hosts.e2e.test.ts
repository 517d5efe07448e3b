// The host commands end to end: add-host, rotate-host-token, remove-host, hosts, drift, and a spoke
// whose token is refused.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../src/db/embedded.ts';
import { hashToken, Hosts } from '../../src/ledger/hosts.ts';
import { placePending } from '../../src/ledger/reactor.ts';
import { operator, sshKey, testDatabase, type TestDatabase } from '../support/db.ts';
import { runCapsul, startServe } from '../support/processes.ts';
import { capsulHere } from '../support/cli.ts';

let db: TestDatabase;
let dataDir: string;
before(async () => {
  db = await testDatabase({ host: false });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-hosts-'));
});
after(async () => {
  await db.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const capsul = (args: string[]) => capsulHere(args, { ...db.env, CAPSUL_DATA_DIR: dataDir });

describe('capsul add-host', () => {
  it('registers a host and prints its token alone on stdout, keeping only its hash', async () => {
    const run = await capsul(['add-host', '--id', 'node-a', '--memory-mb', '4096', '--vcpus', '4']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^[A-Za-z0-9_-]{43}\n$/);
    const token = run.stdout.trim();
    const { rows } = await db.pool.query('SELECT memory_mb, vcpus, token_hash FROM hosts WHERE id = $1', [`node-a`]);
    assert.deepEqual(rows[0], { memory_mb: 4096, vcpus: 4, token_hash: hashToken(token) });
    const events = await db.pool.query(
      `SELECT message_data::text AS data, message_metadata->'by'->>'id' AS by FROM emt_messages WHERE stream_id = 'host-node-a'`,
    );
    assert.doesNotMatch(events.rows[0].data, new RegExp(token), 'the token itself is never stored');
    assert.equal(events.rows[0].by, 'alice');
  });

  it('refuses bad input and a second registration, changing nothing', async () => {
    assert.equal((await capsul(['add-host', '--id', 'Node_B', '--memory-mb', '1', '--vcpus', '1'])).code, 1);
    assert.equal((await capsul(['add-host', '--id', 'node-b', '--memory-mb', 'lots', '--vcpus', '1'])).code, 2);
    assert.equal((await capsul(['add-host', '--id', 'node-b', '--vcpus', '1'])).code, 2);
    const again = await capsul(['add-host', '--id', 'node-a', '--memory-mb', '1', '--vcpus', '1']);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'capsul add-host: host node-a is already registered\n');
    assert.equal(again.stdout, '');
  });
});

describe('capsul rotate-host-token and remove-host', () => {
  it('gives a new token; the old one stops working', async () => {
    const first = (await capsul(['add-host', '--id', 'node-r', '--memory-mb', '1024', '--vcpus', '1'])).stdout.trim();
    const run = await capsul(['rotate-host-token', 'node-r']);
    assert.equal(run.code, 0, run.stderr);
    const second = run.stdout.trim();
    assert.notEqual(second, first);
    const { rows } = await db.pool.query('SELECT token_hash FROM hosts WHERE id = $1', ['node-r']);
    assert.equal(rows[0].token_hash, hashToken(second));
    assert.equal((await capsul(['rotate-host-token', 'no-such-host'])).code, 1);
  });

  it('refuses to remove a host that still has capsuls, then removes it once they are gone', async () => {
    const token = (await capsul(['add-host', '--id', 'node-x', '--memory-mb', '8192', '--vcpus', '4'])).stdout.trim();
    await db.pool.query(`INSERT INTO host_heartbeats VALUES ('node-x', now(), 8192, 4, '[]', 'test')`);
    await db.ledger.recordPayment({ email: 'remove@example.org', amountCents: 10_000, cause: operator });
    const { vmId } = await db.ledger.createVm({
      email: 'remove@example.org',
      size: 'f1-s',
      os: 'debian12',
      sshPublicKeys: [sshKey],
      cause: operator,
    });
    await placePending({ pool: db.pool });
    assert.equal((await db.pool.query('SELECT host FROM vms WHERE id = $1', [vmId])).rows[0].host, 'node-x');
    const refused = await capsul(['remove-host', 'node-x']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, 'capsul remove-host: host node-x still has 1 capsul: delete or move it first\n');
    assert.ok(token);
  });

  it('removes an empty host; its id cannot be registered again', async () => {
    await capsul(['add-host', '--id', 'node-gone', '--memory-mb', '1024', '--vcpus', '1']);
    assert.equal((await capsul(['remove-host', 'node-gone'])).code, 0);
    assert.equal(
      (await db.pool.query('SELECT token_hash, removed IS NOT NULL AS removed FROM hosts WHERE id = $1', ['node-gone'])).rows[0].removed,
      true,
    );
    assert.equal((await capsul(['add-host', '--id', 'node-gone', '--memory-mb', '1024', '--vcpus', '1'])).code, 1);
  });
});

describe('capsul hosts and capsul drift', () => {
  it('lists hosts with online/offline, memory used and free, capsul count', async () => {
    const run = await capsul(['hosts', '--header']);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines[0], 'id, status, last_seen, memory_used_mb, memory_mb, memory_free_mb, vcpus, capsuls');
    assert.ok(
      lines.some((l) => /^node-x, online, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, 1024, 8192, 7168, 4, 1$/.test(l)),
      run.stdout,
    );
    assert.ok(
      lines.some((l) => l === 'node-a, offline, , 0, 4096, 4096, 4, 0'),
      run.stdout,
    );
    assert.ok(!lines.some((l) => l.startsWith('node-gone')), 'removed hosts are not listed');
  });

  it('says when there is no drift, and lists open incidents', async () => {
    const none = await capsul(['drift']);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /no drift/);
    await new Hosts({ pool: db.pool }).checkDrift('node-a', ['capsul-stray00009']);
    const open = await capsul(['drift', '--header']);
    assert.match(
      open.stdout,
      /^host, capsul, kind, detected\nnode-a, capsul-stray00009, unexpected-on-host, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/,
    );
  });
});

describe('capsul spoke', () => {
  it('exits 1 with one line when the hub refuses its token', async () => {
    const port = await freePort();
    const hub = await startServe({ ...db.env, PORT: String(port), CAPSUL_MODE: 'hub', CAPSUL_DATA_DIR: dataDir });
    try {
      const run = await runCapsul(['spoke'], {
        HUB_URL: `http://127.0.0.1:${port}`,
        SPOKE_HOST_ID: 'node-a',
        SPOKE_HOST_TOKEN: 'x'.repeat(43),
        SPOKE_DRIVER: 'simulated',
        SPOKE_DATA_DIR: path.join(dataDir, 'spoke-node-a'),
        DATABASE_URL: '',
      });
      assert.equal(run.code, 1);
      assert.match(run.stderr, /refused|401/i);
      assert.doesNotMatch(run.stderr, /x{43}/, 'the token is never printed');
    } finally {
      hub.child.kill('SIGTERM');
      await hub.exited;
    }
  });

  it('exits 1 with one line for a plain-http hub that is not on this machine', async () => {
    const run = await runCapsul(['spoke'], {
      HUB_URL: 'http://hub.example.org',
      SPOKE_HOST_ID: 'node-a',
      SPOKE_HOST_TOKEN: 'x'.repeat(43),
      SPOKE_DRIVER: 'simulated',
      DATABASE_URL: '',
    });
    assert.equal(run.code, 1);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, /https/);
  });
});
