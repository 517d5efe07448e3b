// Every route of the hub has a fuzz model (test/fuzz/hub.ts): a route added without one fails here, so no
// route escapes fuzzing. The routes are read from the hub itself, built with every provider configured.
// And the machinery is checked against itself: the route reader, and the watch that a refusal wrote nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify, { type LightMyRequestResponse } from 'fastify';
import { insertSession } from '../../src/hub/web/session.ts';
import { RefusalWatch, routesOf } from '../support/fuzz.ts';
import { areasOf, fuzzHub, modelledRoutes, type FuzzHub } from './hub.ts';

let hub: FuzzHub;
before(async () => {
  hub = await fuzzHub();
});
after(() => hub?.close());

describe('fuzz coverage', () => {
  it('every route of the hub is fuzzed, and every model is a route', () => {
    const routes = hub.routes();
    const modelled = modelledRoutes();
    assert.ok(routes.length > 30, `only ${routes.length} routes read from the hub: ${routes.join(', ')}`);
    assert.deepEqual(
      routes.filter((route) => !modelled.has(route)),
      [],
      'routes no fuzz model covers: add one to test/fuzz/hub.ts',
    );
    assert.deepEqual(
      [...modelled].filter((route) => !routes.includes(route)),
      [],
      'fuzz models of routes the hub does not have',
    );
  });

  it('every model is fuzzed by exactly one test file', () => {
    const stray = [...areasOf()].filter(([, names]) => names.length !== 1);
    assert.deepEqual(stray, [], 'models in no area or in several: fix `areas` in test/fuzz/hub.ts');
  });
});

describe('the fuzz machinery itself', () => {
  it('reads nested and prefixed routes from a route tree', async () => {
    const app = Fastify();
    app.get('/a/:id', async () => 1);
    app.post('/a/:id/x', async () => 1);
    await app.register(
      async (scope) => {
        scope.post('/w', async () => 1);
      },
      { prefix: '/p' },
    );
    await app.ready();
    assert.deepEqual(routesOf(app).sort(), ['GET /a/:id', 'HEAD /a/:id', 'POST /a/:id/x', 'POST /p/w']);
    await app.close();
  });

  it('a refusal that wrote a row is caught', async () => {
    const watch = new RefusalWatch(hub.web.db.admin);
    await watch.before();
    await insertSession(hub.web.db.pool, { now: hub.web.clock.now }, 'writer@example.org');
    await assert.rejects(
      watch.after({ statusCode: 400, body: '' } as LightMyRequestResponse, 'a refusal that wrote'),
      /yet the database changed: rows sessions/,
    );
  });
});
