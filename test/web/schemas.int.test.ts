// Route schemas (TypeBox, through fastify's validator) over the hub: a field of the wrong shape is refused
// with 400 in the page's own words (the spoke API: in JSON, with the schema's words), and only after the
// login and CSRF checks have answered, so a stranger or a forged form learns nothing more from a schema.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { Hosts } from '../../src/ledger/hosts.ts';
import { operator } from '../support/db.ts';
import { webHarness, type WebHarness } from '../support/web.ts';

let web: WebHarness;
let hostToken: string;

before(async () => {
  web = await webHarness();
  ({ token: hostToken } = await new Hosts({ pool: web.db.pool }).add({ hostId: 'schema-host', memoryMb: 1024, vcpus: 1, cause: operator }));
});
after(() => web.close());

/** The error page's message, after checking it is one (400, no stack trace). */
function refusal(response: LightMyRequestResponse): string {
  assert.equal(response.statusCode, 400, response.body.slice(0, 300));
  assert.doesNotMatch(response.body, /\bat [\w.<>]+ \(|node_modules|Error:/, 'no stack trace');
  const message = /<h1>That did not work<\/h1>\s*<p>([^<]*)<\/p>/.exec(response.body)?.[1];
  assert.ok(message, 'the error page, with a message');
  return message.replaceAll('&#39;', "'");
}

describe("a form field of the wrong shape, refused by the route's schema", () => {
  it('names the field in the page’s words: the SSH key forms', async () => {
    const client = await web.loggedIn('shapes@example.org');
    await client.get('/console/ssh');
    assert.equal(
      refusal(await client.post('/console/ssh', { key: ['a', 'b'], name: 'two' })),
      "the form's key field is not what this page sends: reload the page and try again",
    );
    assert.equal(
      refusal(await client.post('/console/ssh/delete', { name: ['a', 'b'] })),
      "the form's name field is not what this page sends: reload the page and try again",
    );
    assert.match(refusal(await client.get('/console/ssh?done=added&done=deleted')), /^the address's done parameter is not/);
  });

  it('names the field on the login form', async () => {
    const client = web.client();
    await client.get('/auth/login');
    assert.match(refusal(await client.post('/auth/login', { email: ['a@b.org', 'c@d.org'] })), /^the form's email field/);
    assert.match(refusal(await client.get('/auth/login?next=/a&next=/b')), /^the address's next parameter/);
  });

  it('answers JSON to a script, in the same words', async () => {
    const client = await web.loggedIn('json-shapes@example.org');
    await client.get('/console/ssh');
    const response = await web.hub.inject({
      method: 'POST',
      url: '/console/ssh/delete',
      headers: { cookie: client.cookieHeader, 'content-type': 'application/json', 'x-csrf-token': client.csrf },
      payload: JSON.stringify({ name: { not: 'text' } }),
    });
    assert.equal(response.statusCode, 400);
    assert.deepEqual(response.json(), { error: "the form's name field is not what this page sends: reload the page and try again" });
  });

  it('comes after the login check: a stranger is sent to log in, whatever the form held', async () => {
    const stranger = web.client();
    await stranger.get('/auth/login');
    const response = await stranger.post('/console/ssh', { key: ['a', 'b'] });
    assert.equal(response.statusCode, 303);
    assert.match(String(response.headers.location), /^\/auth\/login\?next=/);
  });

  it('comes after the CSRF check: a forged form is refused as one, whatever it held', async () => {
    const client = await web.loggedIn('forged@example.org');
    await client.get('/console/ssh');
    assert.equal((await client.post('/console/ssh', { key: ['a', 'b'], _csrf: null })).statusCode, 403);
    const visitor = web.client();
    await visitor.get('/auth/login');
    assert.equal((await visitor.post('/auth/login', { email: ['a@b.org', 'c@d.org'], _csrf: 'forged' })).statusCode, 403);
  });
});

describe('the spoke API, refused by its schema', () => {
  const poll = (query: string) =>
    web.hub.inject({
      method: 'GET',
      url: `/spoke/v1/operations?${query}`,
      headers: { 'x-capsul-host': 'schema-host', authorization: `Bearer ${hostToken}` },
    });

  it("answers a wait that is not a whole number of ms up to the protocol's limit with 400 and the schema's words", async () => {
    for (const [query, error] of [
      ['waitMs=1.5', 'querystring/waitMs must be integer'],
      ['waitMs=x', 'querystring/waitMs must be integer'],
      ['waitMs=-1', 'querystring/waitMs must be >= 0'],
      ['waitMs=30001', 'querystring/waitMs must be <= 30000'],
    ]) {
      const response = await poll(query!);
      assert.equal(response.statusCode, 400, query);
      assert.deepEqual(response.json(), { error }, query);
    }
    assert.deepEqual((await poll('waitMs=0')).json(), { operations: [] });
  });

  it('checks the token before the schema: a stranger gets 401, whatever it asks', async () => {
    const response = await web.hub.inject({ method: 'GET', url: '/spoke/v1/operations?waitMs=x' });
    assert.equal(response.statusCode, 401);
  });
});
