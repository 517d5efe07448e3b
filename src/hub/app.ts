// The hub's HTTP application. Issue 2 serves /health; pages and the spoke API build on this.
import Fastify, { type FastifyInstance } from 'fastify';
import type pg from 'pg';
import { latestVersion, schemaVersion } from '../db/migrate.ts';

export type HubDeps = { pool: pg.Pool; logger?: boolean | object };

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

  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, 'request failed');
    return reply.code(status).send({ error: status === 500 ? 'something went wrong on our side' : error.message });
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ error: 'not found' }));
  return app;
}
