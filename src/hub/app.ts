// The hub's HTTP application. Plugins in layers: security headers and views first, then the app's
// routes (/health, the public pages, the spoke API), then one error handler for all of them.
import { fileURLToPath } from 'node:url';
import helmet from '@fastify/helmet';
import view from '@fastify/view';
import { Eta } from 'eta';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type pg from 'pg';
import { latestVersion, schemaVersion } from '../db/migrate.ts';
import { createStreamCache } from '../ledger/cache.ts';
import { Hosts } from '../ledger/hosts.ts';
import { spokeApi, spokeApiPrefix } from './spoke-api.ts';
import { publicPages } from './web/public.ts';

const viewsDir = fileURLToPath(new URL('./web/views/', import.meta.url));

export type HubDeps = {
  pool: pg.Pool;
  logger?: boolean | object;
  now?: () => Date;
  afterReports?: () => void;
  supportEmail?: string;
};

export async function buildHub(deps: HubDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: 64 * 1024,
    requestTimeout: 30_000,
  });

  // Content-Security-Policy default-src 'self' and the other helmet headers, on every response.
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"], baseUri: ["'self'"], formAction: ["'self'"], frameAncestors: ["'none'"],
        objectSrc: ["'none'"], imgSrc: ["'self'", 'data:'], styleSrc: ["'self'"], scriptSrc: ["'self'"],
      },
    },
  });
  await app.register(view, { engine: { eta: new Eta({ views: viewsDir, autoEscape: true }) }, templates: viewsDir });

  // Set before any route plugin is registered: plugins inherit the handlers in force when they register.
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ err: error.message }, 'request refused');
    const message = status === 500 ? 'something went wrong on our side' : error.message;
    if (wantsHtml(request)) {
      return errorPage(reply, status, status === 500 ? 'Something went wrong' : 'That did not work',
        status === 500 ? 'Something went wrong on our side. It has been logged; please try again in a moment.' : message);
    }
    return reply.code(status).send({ error: message });
  });
  app.setNotFoundHandler((request, reply) => {
    if (wantsHtml(request)) return errorPage(reply, 404, 'Page not found', 'There is no page at this address.');
    return reply.code(404).send({ error: 'not found' });
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
  await app.register(publicPages, { pool: deps.pool, supportEmail: deps.supportEmail ?? 'support@localhost' } as never);
  // Spokes heartbeat and poll all day: their routine requests stay out of the info log.
  await app.register(spokeApi, { prefix: spokeApiPrefix, logLevel: 'warn', pool: deps.pool, cache, hosts, now: deps.now, afterReports: deps.afterReports } as never);

  return app;
}

/** Browsers get pages; spokes and scripts get JSON. */
function wantsHtml(request: FastifyRequest): boolean {
  return !request.url.startsWith(spokeApiPrefix) && (request.headers.accept ?? '').includes('text/html');
}

function errorPage(reply: FastifyReply, status: number, title: string, message: string) {
  return reply.code(status).view('error.eta', { title, message });
}
