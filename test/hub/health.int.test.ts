// The hub over real HTTP against a real database: /health, unknown routes, and `capsul serve` itself.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createPool } from '../../src/db/database.ts';
import { freePort } from '../../src/db/embedded.ts';
import { latestVersion, migrate } from '../../src/db/migrate.ts';
import { buildHub } from '../../src/hub/app.ts';
import { emptyDatabase, testDatabase, type TestDatabase } from '../support/db.ts';
import { startServe } from '../support/processes.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

describe('hub', () => {
  it('answers 503 "back in a moment", never 500, while its database cannot be reached', async () => {
    const unreachable = createPool(`postgres://capsul_app@127.0.0.1:${await freePort()}/capsul`, 2);
    const hub = await buildHub({ pool: unreachable });
    try {
      const page = await hub.inject({ method: 'GET', url: '/pricing', headers: { accept: 'text/html' } });
      assert.equal(page.statusCode, 503);
      assert.equal(page.headers['retry-after'], '10');
      assert.match(page.body, /Back in a moment/);
      assert.doesNotMatch(page.body, /ECONNREFUSED|at .*\.ts:\d+/);
      const json = await hub.inject({ method: 'GET', url: '/pricing' });
      assert.equal(json.statusCode, 503);
      assert.deepEqual(json.json(), { error: 'the database is unavailable just now: try again shortly' });
      const health = await hub.inject({ method: 'GET', url: '/health' });
      assert.equal(health.statusCode, 503);
    } finally {
      await hub.close();
      await unreachable.end();
    }
  });

  it('GET /health reports the database and schema version', async () => {
    const hub = await buildHub({ pool: db.pool });
    try {
      const response = await hub.inject({ method: 'GET', url: '/health' });
      assert.equal(response.statusCode, 200);
      assert.deepEqual(response.json(), {
        status: 'ok',
        database: 'ok',
        schemaVersion: latestVersion(),
        expectedSchemaVersion: latestVersion(),
      });
    } finally {
      await hub.close();
    }
  });

  it("GET /health answers 503 when the schema is not the code's", async () => {
    const empty = await emptyDatabase();
    const pool = createPool(empty.url, 2);
    const hub = await buildHub({ pool });
    try {
      await migrate(pool, { target: latestVersion() - 1 });
      const response = await hub.inject({ method: 'GET', url: '/health' });
      assert.equal(response.statusCode, 503);
      assert.equal(response.json().schemaVersion, latestVersion() - 1);
    } finally {
      await hub.close();
      await pool.end();
      await empty.drop();
    }
  });

  it('GET /health answers 503 when the database is unreachable', async () => {
    const pool = createPool(`postgres://nobody@127.0.0.1:${await freePort()}/none`, 1);
    const hub = await buildHub({ pool });
    try {
      const response = await hub.inject({ method: 'GET', url: '/health' });
      assert.equal(response.statusCode, 503);
      assert.equal(response.json().database, 'unreachable');
    } finally {
      await hub.close();
      await pool.end();
    }
  });

  it('answers unknown paths with 404', async () => {
    const hub = await buildHub({ pool: db.pool });
    try {
      const response = await hub.inject({ method: 'GET', url: '/no/such/page' });
      assert.equal(response.statusCode, 404);
    } finally {
      await hub.close();
    }
  });

  it('capsul serve listens, answers /health over HTTP, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const hub = await startServe({ ...db.env, PORT: String(port) });
    try {
      assert.match(hub.output(), new RegExp(`capsul hub running at http://localhost:${port}`));
      const response = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(response.status, 200);
    } finally {
      hub.child.kill('SIGTERM');
    }
    assert.equal(await hub.exited, 0);
    assert.doesNotMatch(hub.output(), /postgres:\/\/[^\s]*:[^*\s]+@/, 'no password in the log');
  });
});
