// The hub's HTTP application: /health and the spoke API; the web pages build on this.
import Fastify, { type FastifyInstance } from 'fastify';
import type pg from 'pg';
import { latestVersion, schemaVersion } from '../db/migrate.ts';
import { createStreamCache } from '../ledger/cache.ts';
import { Hosts } from '../ledger/hosts.ts';
import { spokeApi, spokeApiPrefix } from './spoke-api.ts';

export type HubDeps = { pool: pg.Pool; logger?: boolean | object; now?: () => Date; afterReports?: () => void };

export async function buildHub(deps: HubDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: 64 * 1024,
    requestTimeout: 30_000,
  });

  app.get('/health', async (_request, reply) => {
    const expected = latestVersion();
    try {
      const version = await schemaVersion(deps.pool);
      const healthy = version === expected;
      return reply.code(healthy ? 200 : 503).send({
        status: healthy ? 'ok' : 'schema mismatch',
        database: 'ok',
        schemaVersion: version,
        expectedSchemaVersion: expected,
      });
    } catch (error) {
      app.log.error({ err: error }, 'health check: database unreachable');
      return reply.code(503).send({ status: 'unavailable', database: 'unreachable', expectedSchemaVersion: expected });
    }
  });

  const cache = createStreamCache();
  const hosts = new Hosts({ pool: deps.pool, cache, now: deps.now });
  // Spokes heartbeat and poll all day: their routine requests stay out of the info log.
  await app.register(spokeApi, { prefix: spokeApiPrefix, logLevel: 'warn', pool: deps.pool, cache, hosts, now: deps.now, afterReports: deps.afterReports } as never);

  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ err: error.message }, 'request refused');
    return reply.code(status).send({ error: status === 500 ? 'something went wrong on our side' : error.message });
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ error: 'not found' }));
  return app;
}
