// The hub's request log: one line per request at LOG_REQUESTS' level, and never a login link's token.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { LogLevel } from '../../src/config.ts';
import { buildHub, loggableUrl } from '../../src/hub/app.ts';
import { testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
before(async () => {
  db = await testDatabase();
});
after(() => db.close());

/** A hub logging at `level` into memory, with its requests at `requestLogLevel`. */
async function loggingHub(level: LogLevel, requestLogLevel?: LogLevel) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const hub = await buildHub({ pool: db.pool, logger: { level, stream }, ...(requestLogLevel ? { requestLogLevel } : {}) });
  return { hub, requests: () => lines.filter((line) => line.msg === 'request'), lines };
}

describe('the request log', () => {
  it('writes one line per request, at info by default: method, address, status, time', async () => {
    const { hub, requests, lines } = await loggingHub('info');
    try {
      await hub.inject({ method: 'GET', url: '/pricing' });
      await hub.inject({ method: 'GET', url: '/no-such-page' });
      assert.deepEqual(
        requests().map(({ level, method, url, statusCode }) => ({ level, method, url, statusCode })),
        [
          { level: 30, method: 'GET', url: '/pricing', statusCode: 200 },
          { level: 30, method: 'GET', url: '/no-such-page', statusCode: 404 },
        ],
      );
      assert.ok(requests().every((line) => typeof line.ms === 'number'));
      assert.ok(
        !lines.some((line) => line.msg === 'incoming request' || line.msg === 'request completed'),
        "fastify's own two lines are gone",
      );
    } finally {
      await hub.close();
    }
  });

  it("never writes a login link's token", async () => {
    const { hub, lines } = await loggingHub('trace');
    try {
      const token = 'A'.repeat(43);
      await hub.inject({ method: 'GET', url: `/auth/magic/${token}` });
      await hub.inject({ method: 'POST', url: `/auth/magic/${token}?x=1` });
      assert.ok(lines.length > 0);
      assert.ok(!JSON.stringify(lines).includes(token), 'the token appears nowhere in the log');
      assert.equal(loggableUrl(`/auth/magic/${token}?next=/console`), '/auth/magic/…?next=/console');
      assert.equal(loggableUrl('/console/capsul-abcdefghij'), '/console/capsul-abcdefghij');
    } finally {
      await hub.close();
    }
  });

  it('writes them at LOG_REQUESTS: below the log level they are not written, and silent writes none', async () => {
    for (const [level, requestLogLevel, expected] of [
      ['info', 'debug', 0],
      ['debug', 'debug', 1],
      ['trace', 'silent', 0],
    ] as const) {
      const { hub, requests } = await loggingHub(level, requestLogLevel);
      try {
        await hub.inject({ method: 'GET', url: '/pricing' });
        assert.equal(requests().length, expected, `log level ${level}, requests at ${requestLogLevel}`);
      } finally {
        await hub.close();
      }
    }
  });
});
