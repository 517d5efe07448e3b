// The embedded development database, driven through the real binary: cold start, attaching to the
// server another capsul process runs, recovering from an orphan, and one-line errors.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../src/db/embedded.ts';
import { latestVersion } from '../../src/db/migrate.ts';
import { isAlive, runCapsul, startServe } from '../support/processes.ts';

let dataDir: string;
let env: NodeJS.ProcessEnv;

before(() => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'capsul-embedded-'));
  chmodSync(dataDir, 0o755); // as root the server runs as the postgres user
  env = { DATABASE_URL: '', CAPSUL_DATA_DIR: dataDir };
});
after(() => rmSync(dataDir, { recursive: true, force: true }));

const postmasterPid = () => Number(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);

describe('the embedded database', () => {
  it('starts cold, migrates, and stops again when the command ends', async () => {
    const fresh = await runCapsul(['schema-version'], env);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(fresh.stdout, '0\n');
    const migrated = await runCapsul(['migrate'], env);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.match(migrated.stderr, new RegExp(`schema moved from version 0 to ${latestVersion()}`));
    const again = await runCapsul(['schema-version'], env);
    assert.equal(again.stdout, `${latestVersion()}\n`);
    const version = readFileSync(path.join(dataDir, 'pg', 'PG_VERSION'), 'utf8').trim();
    assert.match(version, /^\d+$/);
    assert.throws(() => postmasterPid(), 'no server is left running');
  });

  it('joins the server that a running hub owns, without stopping it', async () => {
    const port = await freePort();
    const hub = await startServe({ ...env, PORT: String(port) });
    try {
      const pid = postmasterPid();
      const paid = await runCapsul(['record-payment', '--email', 'attach@example.org', '--dollars', '5'], env);
      assert.equal(paid.code, 0, paid.stderr);
      assert.match(paid.stdout, /^\d+\n$/);
      assert.equal(postmasterPid(), pid, "the CLI used the hub's server");
      // The seed's recipe, with nothing configured: capsul sql connects as capsul_reader by itself.
      const recipe = await runCapsul(['sql', '-c', 'SELECT id, created, email, dollars, invalidated from payments'], env);
      assert.equal(recipe.code, 0, recipe.stderr);
      assert.match(recipe.stdout, /^\d+, \d{4}-\d\d-\d\dT[\d:.]+, attach@example\.org, 5\.00, FALSE\n$/);
      // Everyday work runs on capsul's roles: the hub's sessions are capsul_app's, this query capsul_reader's.
      const sessions = await runCapsul(
        [
          'sql',
          '-c',
          `SELECT DISTINCT usename FROM pg_stat_activity
        WHERE datname = current_database() AND usename IS NOT NULL ORDER BY 1`,
        ],
        env,
      );
      assert.equal(sessions.stdout, 'capsul_app\ncapsul_reader\n', sessions.stderr);
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), {
        status: 'ok',
        database: 'ok',
        schemaVersion: latestVersion(),
        expectedSchemaVersion: latestVersion(),
      });
    } finally {
      hub.child.kill('SIGTERM');
    }
    assert.equal(await hub.exited, 0);
  });

  it('takes over the server a killed process left running, rather than restarting it under its users', async () => {
    const hub = await startServe({ ...env, PORT: String(await freePort()) });
    const orphan = postmasterPid();
    hub.child.kill('SIGKILL');
    await hub.exited;
    assert.ok(isAlive(orphan), 'postgres outlives a kill -9 of its parent');
    const run = await runCapsul(['balance', '--email', 'attach@example.org'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '5.00\n', 'the data survived');
    assert.ok(!isAlive(orphan), 'the command that took it over stopped it when it ended');
  });

  it('lets commands started all at once on a stopped database join one server, and never changes its credentials', async () => {
    const credentials = readFileSync(path.join(dataDir, 'pg.owner.json'), 'utf8');
    const { password, rolePasswords } = JSON.parse(credentials);
    const runs = await Promise.all(Array.from({ length: 12 }, () => runCapsul(['balance', '--email', 'attach@example.org'], env)));
    for (const run of runs) {
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, '5.00\n');
    }
    const after = JSON.parse(readFileSync(path.join(dataDir, 'pg.owner.json'), 'utf8'));
    assert.deepEqual({ password: after.password, rolePasswords: after.rolePasswords }, { password, rolePasswords });
    assert.throws(() => postmasterPid(), 'the last one out stopped the server');
    assert.equal((await runCapsul(['schema-version'], env)).code, 0, 'and the next command still gets in');
  });

  it('starts the database again when it dies under a running hub, which then serves again', async () => {
    const port = await freePort();
    const hub = await startServe({ ...env, PORT: String(port) });
    try {
      const first = postmasterPid();
      process.kill(first, 'SIGKILL');
      // The hub's watch notices within seconds and starts (or joins) it again on the same port.
      let healthy = false;
      for (let attempt = 0; attempt < 240 && !healthy; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        healthy = (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200;
      }
      assert.ok(healthy, `/health never came back:\n${hub.output()}`);
      assert.notEqual(postmasterPid(), first, 'a new server');
      assert.match(hub.output(), /the database does not answer .*: starting the embedded one again/);
      const paid = await runCapsul(['record-payment', '--email', 'attach@example.org', '--dollars', '1'], env);
      assert.equal(paid.code, 0, paid.stderr);
    } finally {
      hub.child.kill('SIGTERM');
    }
    assert.equal(await hub.exited, 0);
    assert.equal((await runCapsul(['balance', '--email', 'attach@example.org'], env)).stdout, '6.00\n');
  });

  it('refuses, in one line, an existing database whose credentials are gone, and makes up none', async () => {
    const copy = mkdtempSync(path.join(os.tmpdir(), 'capsul-nocreds-'));
    chmodSync(copy, 0o755);
    mkdirSync(path.join(copy, 'pg'), { mode: 0o700 });
    writeFileSync(path.join(copy, 'pg', 'PG_VERSION'), '18\n');
    try {
      const run = await runCapsul(['schema-version'], { DATABASE_URL: '', CAPSUL_DATA_DIR: copy });
      assert.equal(run.code, 1);
      assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
      assert.match(
        run.stderr,
        /^capsul schema-version: the embedded database in .*pg exists but its credentials \(.*pg\.owner\.json\) are missing or unreadable: restore that file/,
      );
      assert.throws(() => readFileSync(path.join(copy, 'pg.owner.json')), 'no credentials were made up');
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('says in one line why it cannot start', async () => {
    const broken = mkdtempSync(path.join(os.tmpdir(), 'capsul-broken-'));
    chmodSync(broken, 0o755);
    mkdirSync(path.join(broken, 'pg'), { mode: 0o700 });
    writeFileSync(path.join(broken, 'pg', 'PG_VERSION'), '9\n');
    writeFileSync(path.join(broken, 'pg.owner.json'), JSON.stringify({ ownerPid: 0, port: 0, password: 'x' }), { mode: 0o600 });
    try {
      const run = await runCapsul(['schema-version'], { DATABASE_URL: '', CAPSUL_DATA_DIR: broken });
      assert.equal(run.code, 1);
      assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
      assert.match(run.stderr, /^capsul schema-version: could not start the embedded database in .*pg: /);
    } finally {
      rmSync(broken, { recursive: true, force: true });
    }
  });

  it('says in one line why it cannot connect to DATABASE_URL', async () => {
    const port = await freePort();
    const run = await runCapsul(['schema-version'], { DATABASE_URL: `postgres://capsul:secret@127.0.0.1:${port}/capsul` });
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr,
      `capsul schema-version: cannot connect to the database at postgres://capsul:***@127.0.0.1:${port}/capsul: connection refused (is PostgreSQL running there?)\n`,
    );
    assert.doesNotMatch(run.stderr, /secret/);
  });
});
