// The pool every capsul process uses: what each of its sessions is set up with.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createPool } from '../../src/db/database.ts';
import { emptyDatabase } from '../support/db.ts';

let db: Awaited<ReturnType<typeof emptyDatabase>>;
before(async () => {
  db = await emptyDatabase();
});
after(() => db.drop());

describe('createPool', () => {
  it('asks the server to notice a vanished client within about a minute, on every connection, so its advisory locks pass to another hub', async () => {
    const pool = createPool(db.url, 2);
    try {
      const clients = await Promise.all([pool.connect(), pool.connect()]);
      try {
        for (const client of clients) {
          const { rows } = await client.query(
            `SELECT current_setting('tcp_keepalives_idle') AS idle, current_setting('tcp_keepalives_interval') AS "interval",
                    current_setting('tcp_keepalives_count') AS count, inet_client_addr() IS NULL AS unix_socket`,
          );
          // Over a Unix socket the server ignores these and shows 0.
          const expected = rows[0].unix_socket ? { idle: '0', interval: '0', count: '0' } : { idle: '30', interval: '10', count: '3' };
          assert.deepEqual({ idle: rows[0].idle, interval: rows[0].interval, count: rows[0].count }, expected);
        }
      } finally {
        for (const client of clients) client.release();
      }
    } finally {
      await pool.end();
    }
  });
});
