// The capsul console over real HTTP against a real database: the list, creating a capsul (only what
// the balance covers; refusals re-render and create nothing), a capsul's page, and its actions behind
// confirm pages. And the negative space: other customers' capsuls, CSRF, malformed and hostile forms,
// two tabs acting at once.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { accountStream } from '../../src/domain/account/events.ts';
import type { ObservedState } from '../../src/domain/vm/events.ts';
import { vmStream } from '../../src/domain/vm/events.ts';
import { loadStream } from '../../src/db/event-store.ts';
import { operator, sshKey } from '../support/db.ts';
import { vmCommand } from '../support/scenario.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';
import { sshCommand } from '../../src/hub/web/console.ts';

const testCause = { by: { kind: 'spoke', id: 'host-a' } } as const;

/** A second key, and both keys' fingerprints as `ssh-keygen -lf` prints them. */
const otherKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPvbVRqS/n0Hihhoris245wE8MuOC7lDK7tZfc49F4aS second key';
const sshKeyFingerprint = 'SHA256:oZ61ZTVu5SWR/dlFjmYNW7pw/fRVmDO60hP3uxz427U';
const otherKeyFingerprint = 'SHA256:+j7ezYIkAzjYdGIqdN4HPkrHTXUXhVCja6NKy2OGRQc';

const start = new Date('2026-11-01T12:00:00Z');
const dayMs = 86_400_000;

let web: WebHarness;
let nudges = 0;
before(async () => {
  web = await webHarness({
    start,
    afterCommands: () => {
      nudges++;
    },
  });
});
after(() => web.close());

// ---- givens ----

const count = async (sql: string, params: unknown[] = []) => (await web.db.pool.query(sql, params)).rows[0].n as number;
const capsulsOf = (email: string) => count('SELECT count(*)::int AS n FROM vms WHERE email = $1', [email]);
const versionOf = async (streamId: string) => (await loadStream(web.db.pool, streamId)).version;
const fund = (email: string, amountCents = 10_000) => web.db.ledger.recordPayment({ email, amountCents, cause: operator });

async function saveKey(email: string, name: string, content = sshKey): Promise<void> {
  await web.db.pool.query('INSERT INTO ssh_public_keys (email, name, content, created) VALUES ($1, $2, $3, $4)', [
    email,
    name,
    content,
    start.toISOString(),
  ]);
}

async function newCapsul(email: string, size = 'f1-xs'): Promise<{ vmId: string; accountId: string }> {
  const { vmId } = await web.db.ledger.createVm({ email, size, os: 'debian12', sshPublicKeys: [sshKey, otherKey], cause: operator });
  return { vmId, accountId: (await web.db.ledger.accountIdFor(email))! };
}

/** Report times only ever move forward, so the capsul's stream never takes a report as stale. */
let reports = 0;
const reportAt = () => new Date(start.getTime() + ++reports * 1000);
const reportIds = (operationId: string | null = null) => ({ reportId: randomUUID(), operationId });
const meta = () => ({ now: web.clock.now(), cause: testCause });

async function place(vmId: string, accountId: string): Promise<string> {
  const operationId = randomUUID();
  await vmCommand(web.db, {
    type: 'PlaceVm',
    data: { vmId, host: 'test-host', operationId, context: { accountId, deletionRequested: false } },
    metadata: meta(),
  });
  return operationId;
}

async function provision(vmId: string, createOperation: string): Promise<void> {
  await vmCommand(web.db, {
    type: 'RecordProvisioned',
    data: {
      vmId,
      host: 'test-host',
      ipv4: '192.0.2.33',
      ipv6: '2001:db8::33',
      observedAt: reportAt(),
      ...reportIds(createOperation),
      sshHostKeys: [
        { type: 'ssh-ed25519', sha256: 'SHA256:hostkeyhostkeyhostkey' },
        { type: 'ssh-rsa', sha256: 'SHA256:rsarsarsarsa' },
      ],
    },
    metadata: meta(),
  });
}

async function observe(vmId: string, state: ObservedState): Promise<void> {
  await vmCommand(web.db, {
    type: 'ObserveState',
    data: { vmId, host: 'test-host', state, observedAt: reportAt(), ...reportIds() },
    metadata: meta(),
  });
}

/** A capsul its host has created and reports in `state`, with no operation open. */
async function capsulIn(email: string, state: ObservedState = 'running'): Promise<string> {
  const { vmId, accountId } = await newCapsul(email);
  await provision(vmId, await place(vmId, accountId));
  await observe(vmId, state);
  return vmId;
}

/** A funded customer with a saved key, logged in. */
async function customer(email: string, amountCents = 10_000): Promise<WebClient> {
  await fund(email, amountCents);
  await saveKey(email, 'laptop');
  return web.loggedIn(email);
}

const versionIn = (body: string) => /name="version" value="(\d+)"/.exec(body)?.[1];
const csrfIn = (body: string) => /name="_csrf" value="([^"]+)"/.exec(body)?.[1];
const offeredSizes = (body: string) => [...body.matchAll(/name="size" value="([^"]+)"/g)].map((m) => m[1]);
const hasRefresh = (body: string) => /<meta http-equiv="refresh" content="\d+">/.test(body);

// ---- the list ----

describe('the capsul list', () => {
  it("shows the customer's undeleted capsuls only, each linked to its page, those being deleted as deleting", async () => {
    const alice = await customer('list-alice@example.org');
    await fund('list-bob@example.org');
    const running = await capsulIn('list-alice@example.org');
    const { vmId: leaving } = await newCapsul('list-alice@example.org');
    await web.db.ledger.deleteVm(leaving, { ...operator, reason: 'done' });
    const { vmId: gone } = await newCapsul('list-alice@example.org');
    await web.db.ledger.deleteVm(gone, { ...operator, reason: 'done' });
    await vmCommand(web.db, {
      type: 'ConfirmDeleted',
      data: { vmId: gone, host: null, observedAt: reportAt(), ...reportIds() },
      metadata: meta(),
    });
    const { vmId: bobs } = await newCapsul('list-bob@example.org');

    const page = await alice.get('/console');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, new RegExp(`<a href="/console/${running}">${running}</a>`));
    assert.match(page.body, /192\.0\.2\.33/);
    assert.match(page.body, /Debian 12 \(bookworm\)/);
    assert.match(page.body, new RegExp(`${leaving}</a></th>(?:\\s*<td>[^<]*</td>){3}\\s*<td>deleting</td>`));
    assert.doesNotMatch(page.body, new RegExp(gone), 'a deleted capsul is not listed');
    assert.doesNotMatch(page.body, new RegExp(bobs), "another customer's capsul is not listed");
    assert.match(page.body, /<a class="button" href="\/console\/create">Create a capsul<\/a>/);
  });

  it('explains the next steps when there are no capsuls yet', async () => {
    const client = await web.loggedIn('list-new@example.org');
    const page = await client.get('/console');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /no capsuls yet/);
    assert.match(page.body, /<a href="\/console\/ssh">add one/);
    assert.match(page.body, /<a href="\/console\/account-balance">add funds/);
  });

  it('after the only capsul is deleted, says there are none now, not "yet"', async () => {
    const email = 'list-emptied@example.org';
    const client = await customer(email);
    const { vmId } = await newCapsul(email);
    await web.db.ledger.deleteVm(vmId, { ...operator, reason: 'done' });
    await vmCommand(web.db, {
      type: 'ConfirmDeleted',
      data: { vmId, host: null, observedAt: reportAt(), ...reportIds() },
      metadata: meta(),
    });
    const page = (await client.get('/console')).body;
    assert.match(page, /You have no capsuls now: the ones you had are deleted\. To create another you need:/);
    assert.doesNotMatch(page, /no capsuls yet/);
  });

  it('shows a capsul whose stop or start the host has not done yet as stopping or starting', async () => {
    const email = 'list-power@example.org';
    const client = await customer(email);
    const stopping = await capsulIn(email, 'running');
    await web.db.ledger.stopVm(stopping, operator);
    const starting = await capsulIn(email, 'stopped');
    await web.db.ledger.startVm(starting, operator);
    const page = (await client.get('/console')).body;
    const stateOf = (vmId: string) => new RegExp(`${vmId}</a></th>(?:\\s*<td>[^<]*</td>){3}\\s*<td>([a-z]+)</td>`).exec(page)?.[1];
    assert.equal(stateOf(stopping), 'stopping');
    assert.equal(stateOf(starting), 'starting');
  });

  it('sends someone not logged in to the login page, and back after it', async () => {
    const page = await web.client().get('/console');
    assert.equal(page.statusCode, 303);
    assert.equal(page.headers.location, '/auth/login?next=%2Fconsole');
  });
});

// ---- creating ----

describe('creating a capsul', () => {
  it('offers only the sizes the balance covers with a month of the other capsuls, and says why the others are missing', async () => {
    const email = 'afford@example.org';
    await fund(email, 1300);
    await saveKey(email, 'laptop');
    await newCapsul(email); // f1-xs: 5.33 a month, so 7.67 is left for a new one
    const client = await web.loggedIn(email);
    const page = await client.get('/console/create');
    assert.equal(page.statusCode, 200);
    assert.deepEqual(offeredSizes(page.body), ['f1-xs', 'f1-s']);
    assert.match(
      page.body,
      /4 more expensive sizes are not offered: a new capsul needs your balance\s+\(\$13\.00\) to cover a month of it plus a month of your other capsuls \(\$5\.33\)/,
    );
    assert.match(page.body, /<a href="\/console\/account-balance">Add funds<\/a>/);
    assert.match(page.body, /<option value="debian12"/);
    assert.doesNotMatch(page.body, /value="ubuntu22"/, 'a deprecated image is not offered');
    assert.match(page.body, /<input type="checkbox" name="keys" value="laptop" checked>/, 'a single saved key is ticked to begin with');
    assert.match(page.body, /<label for="os">Operating system<\/label>\s*<select id="os" name="os" required>/);
  });

  it('explains what is missing, with links, when there are no funds or no saved keys', async () => {
    const client = await web.loggedIn('nothing-yet@example.org');
    const page = await client.get('/console/create');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /not added funds yet.*<a href="\/console\/account-balance">Add funds<\/a>/s);
    assert.match(page.body, /no saved SSH keys.*<a href="\/console\/ssh">Add a key<\/a>/s);
    assert.doesNotMatch(page.body, /action="\/console\/create"/);

    await fund('poor-but-keyed@example.org', 100);
    await saveKey('poor-but-keyed@example.org', 'laptop');
    const poor = await (await web.loggedIn('poor-but-keyed@example.org')).get('/console/create');
    assert.match(poor.body, /Your balance \(\$1\.00\) does not cover a month of any size/);
    assert.deepEqual(offeredSizes(poor.body), []);
  });

  it('creates a capsul with the chosen saved keys, runs the reactions, and lands on its page', async () => {
    const email = 'creator@example.org';
    const client = await customer(email);
    await saveKey(email, 'desktop', otherKey);
    const before = nudges;
    const done = await client.submit('/console/create', '/console/create', { size: 'f1-s', os: 'alpine322', keys: 'desktop' });
    assert.equal(done.statusCode, 303);
    const vmId = /^\/console\/(capsul-[a-z0-9]{10})$/.exec(done.headers.location as string)?.[1];
    assert.ok(vmId, `redirects to the capsul's page, not ${done.headers.location}`);
    const { rows } = await web.db.pool.query(
      'SELECT email, size, os, ssh_public_keys, dollars_per_month::text AS price FROM vms WHERE id = $1',
      [vmId],
    );
    assert.deepEqual(rows, [{ email, size: 'f1-s', os: 'alpine322', ssh_public_keys: [otherKey], price: '7.16' }]);
    assert.equal(nudges, before + 1);
    const accountId = (await web.db.ledger.accountIdFor(email))!;
    const created = (await loadStream(web.db.pool, accountStream(accountId))).events.at(-1)!;
    assert.deepEqual(created.metadata.by, { kind: 'customer', id: accountId }, 'the customer is named by account id, not by email');
    assert.equal((await client.get(done.headers.location as string)).statusCode, 200);
  });

  it('re-renders a refused form with its message and the choices kept, creating nothing', async () => {
    const email = 'refused@example.org';
    const client = await customer(email, 2000); // covers a month of f1-m (12.50), not of f1-xx (50.00)
    await saveKey('someone-else@example.org', 'their-key');
    const cases: [Record<string, string | string[]>, number, RegExp][] = [
      [{ size: 'f1-s', os: 'debian12' }, 400, /choose at least one SSH key/],
      [{ os: 'debian12', keys: 'laptop' }, 400, /choose a size/],
      [{ size: 'f9-huge', os: 'debian12', keys: 'laptop' }, 400, /&quot;f9-huge&quot; is not a capsul size: choose one of f1-xs/],
      [{ size: 'f1-s', os: 'ubuntu22', keys: 'laptop' }, 400, /&quot;ubuntu22&quot; is deprecated/],
      [{ size: 'f1-xx', os: 'debian12', keys: 'laptop' }, 409, /does not cover a month of f1-xx \(50\.00\)/],
      [{ size: 'f1-s', os: 'debian12', keys: ['laptop', 'their-key'] }, 400, /&quot;their-key&quot; is not one of your saved SSH keys/],
    ];
    for (const [form, status, message] of cases) {
      const page = await client.submit('/console/create', '/console/create', form);
      assert.equal(page.statusCode, status, `${JSON.stringify(form)}: ${page.statusCode}`);
      assert.match(page.body, /<p class="error" role="alert">/);
      assert.match(page.body, message);
      assert.match(page.body, /<form method="post" action="\/console\/create"/, 'the form is shown again');
    }
    const kept = await client.submit('/console/create', '/console/create', { size: 'f1-m', os: 'rocky9' });
    assert.match(kept.body, /value="f1-m" required checked>/);
    assert.match(kept.body, /<option value="rocky9" selected>/);
    assert.equal(await capsulsOf(email), 0);
  });

  it('refuses wrong types and huge bodies with 400 and 413, never a 500, creating nothing', async () => {
    const email = 'types@example.org';
    const client = await customer(email);
    await client.get('/console/create');
    assert.equal((await client.post('/console/create', { size: ['f1-s', 'f1-m'], os: 'debian12', keys: 'laptop' })).statusCode, 400);
    assert.equal((await client.post('/console/create', { size: 'f1-s', os: ['debian12', 'alpine322'], keys: 'laptop' })).statusCode, 400);
    assert.equal(
      (await client.post('/console/create', { size: 'f1-s', os: 'debian12', keys: Array.from({ length: 101 }, (_, i) => `k${i}`) }))
        .statusCode,
      400,
    );
    assert.equal((await client.post('/console/create', { size: 'x'.repeat(65), os: 'debian12', keys: 'laptop' })).statusCode, 400);
    const huge = await client.post('/console/create', { size: 'f1-s', os: 'debian12', keys: 'laptop', filler: 'x'.repeat(70 * 1024) });
    assert.equal(huge.statusCode, 413);
    assert.match(huge.body, /too large/);
    assert.equal(
      (await client.post('/console/create', { _csrf: null, size: ['f1-s', 'f1-m'] })).statusCode,
      403,
      'the CSRF check comes first',
    );
    const json = await web.hub.inject({
      method: 'POST',
      url: '/console/create',
      remoteAddress: client.ip,
      headers: { accept: 'text/html', cookie: client.cookieHeader, 'content-type': 'application/json' },
      payload: JSON.stringify({ _csrf: client.csrf, size: 'f1-s', os: 'debian12', keys: [{ name: 'laptop' }] }),
    });
    assert.equal(json.statusCode, 400);
    assert.equal(await capsulsOf(email), 0);
  });

  it('shows script in key names and in what was typed escaped, and still finds the key by its name', async () => {
    const email = 'script@example.org';
    const client = await customer(email);
    const name = '<script>alert("key")</script>';
    await saveKey(email, name, otherKey);
    const page = await client.get('/console/create');
    assert.doesNotMatch(page.body, /<script>/);
    assert.match(page.body, /value="&lt;script&gt;alert\(&quot;key&quot;\)&lt;\/script&gt;"/);
    const typed = await client.post('/console/create', { size: '<img src=x onerror=alert(1)>', os: 'debian12', keys: 'laptop' });
    assert.equal(typed.statusCode, 400);
    assert.doesNotMatch(typed.body, /<img src=x/);
    assert.match(typed.body, /&lt;img src=x onerror=alert\(1\)&gt;/);
    const unknown = await client.post('/console/create', { size: 'f1-s', os: 'debian12', keys: '<b>not mine</b>' });
    assert.equal(unknown.statusCode, 400);
    assert.match(unknown.body, /&lt;b&gt;not mine&lt;\/b&gt;/);
    assert.equal(await capsulsOf(email), 0);
    const done = await client.post('/console/create', { size: 'f1-s', os: 'debian12', keys: name });
    assert.equal(done.statusCode, 303);
    assert.equal(await capsulsOf(email), 1);
  });
});

// ---- a capsul's page ----

describe("a capsul's page", () => {
  it('shows specs, state, addresses, host keys, the installed keys, created, the captured price, charges so far and the last failure', async () => {
    const email = 'detail@example.org';
    const client = await customer(email);
    const vmId = await capsulIn(email);
    await vmCommand(web.db, {
      type: 'RecordFailure',
      data: { vmId, host: 'test-host', error: 'disk <full>', observedAt: reportAt(), ...reportIds() },
      metadata: meta(),
    });
    web.clock.advance(dayMs);
    try {
      const page = await client.get(`/console/${vmId}`);
      assert.equal(page.statusCode, 200);
      assert.match(page.body, new RegExp(`<h1>${vmId}</h1>`));
      for (const fact of [
        /<dt>State<\/dt><dd>failed<\/dd>/,
        /<dt>Size<\/dt><dd>f1-xs: 1 vCPU, 512 MiB memory, 500 GB bandwidth a month<\/dd>/,
        /<dt>Operating system<\/dt><dd>Debian 12 \(bookworm\)<\/dd>/,
        /<dt>Log in<\/dt><dd><code>ssh debian@192\.0\.2\.33<\/code> with one of the keys below<\/dd>/,
        /<dt>IPv4<\/dt><dd><code>192\.0\.2\.33<\/code><\/dd>/,
        /<dt>IPv6<\/dt><dd><code>2001:db8::33<\/code><\/dd>/,
        /<dt>Created<\/dt><dd>2026-11-01 12:00 UTC<\/dd>/,
        /<dt>Price<\/dt><dd>\$5\.33 a month, fixed when it was created<\/dd>/,
        /<dt>Charged so far<\/dt><dd>\$0\.18<\/dd>/, // a day of 5.33 a month: 5.33 / 30.44
      ])
        assert.match(page.body, fact);
      assert.match(page.body, /<td>ssh-ed25519<\/td><td><code>SHA256:hostkeyhostkeyhostkey<\/code><\/td>/);
      assert.match(page.body, /<td>ssh-rsa<\/td><td><code>SHA256:rsarsarsarsa<\/code><\/td>/);
      assert.match(page.body, /<a href="\/faq">/);
      assert.ok(page.body.includes(`<td>ssh-ed25519</td><td>test@capsul</td><td><code>${sshKeyFingerprint}</code></td>`));
      assert.ok(page.body.includes(`<td>ssh-ed25519</td><td>second key</td><td><code>${otherKeyFingerprint}</code></td>`));
      assert.match(page.body, /last failure its host reported: disk &lt;full&gt;/);
    } finally {
      web.clock.set(start);
    }
  });

  it('reloads itself while the capsul is being created, while an operation is open and while it is being deleted; not when idle', async () => {
    const email = 'refresh@example.org';
    const client = await customer(email);
    const { vmId, accountId } = await newCapsul(email);
    const page = async () => (await client.get(`/console/${vmId}`)).body;
    assert.ok(hasRefresh(await page()), 'pending');
    assert.match(await page(), /<dt>Log in<\/dt><dd>once it has an address<\/dd>/, 'no address yet: no ssh line');
    assert.match(await page(), /waiting for a host/);
    const create = await place(vmId, accountId);
    assert.ok(hasRefresh(await page()), 'creating');
    await provision(vmId, create);
    await observe(vmId, 'running');
    assert.ok(!hasRefresh(await page()), 'running, nothing under way');
    await web.db.ledger.stopVm(vmId, operator);
    assert.ok(hasRefresh(await page()), 'a stop waiting for the host');
    assert.match(await page(), /Waiting for its host to stop it\. This page reloads itself every 5 seconds/);
    await web.db.ledger.deleteVm(vmId, { ...operator, reason: 'done' });
    const deleting = await page();
    assert.ok(hasRefresh(deleting), 'being deleted');
    assert.match(deleting, /<dt>State<\/dt><dd>deleting<\/dd>/);
  });

  it("offers only the actions the state allows, and refuses the others' confirm pages", async () => {
    const email = 'offers@example.org';
    const client = await customer(email);
    const links = async (vmId: string) =>
      [...(await client.get(`/console/${vmId}`)).body.matchAll(new RegExp(`href="/console/${vmId}/([a-z-]+)"`, 'g'))].map((m) => m[1]);
    const running = await capsulIn(email, 'running');
    const stopped = await capsulIn(email, 'stopped');
    const crashed = await capsulIn(email, 'crashed');
    const { vmId: pending } = await newCapsul(email);
    const deleting = await capsulIn(email);
    await web.db.ledger.deleteVm(deleting, { ...operator, reason: 'done' });
    assert.deepEqual(await links(running), ['stop', 'force-stop', 'delete']);
    assert.deepEqual(await links(stopped), ['start', 'delete']);
    assert.deepEqual(await links(crashed), ['start', 'delete']);
    assert.deepEqual(await links(pending), ['delete']);
    assert.deepEqual(await links(deleting), []);
    // A power request the host has not done yet: the page says what is coming and offers what makes sense.
    const stopping = await capsulIn(email, 'running');
    await web.db.ledger.stopVm(stopping, operator);
    assert.match((await client.get(`/console/${stopping}`)).body, /<dt>State<\/dt><dd>stopping<\/dd>/);
    assert.deepEqual(await links(stopping), ['force-stop', 'delete'], 'a stop can be hurried, not asked again');
    const forced = await capsulIn(email, 'running');
    await web.db.ledger.stopVm(forced, operator, { force: true });
    assert.deepEqual(await links(forced), ['delete']);
    const starting = await capsulIn(email, 'stopped');
    await web.db.ledger.startVm(starting, operator);
    assert.match((await client.get(`/console/${starting}`)).body, /<dt>State<\/dt><dd>starting<\/dd>/);
    assert.deepEqual(await links(starting), ['delete']);
    assert.equal((await client.get(`/console/${stopping}/stop`)).statusCode, 409, 'no second stop while one is under way');
    for (const url of [
      `/console/${running}/start`,
      `/console/${stopped}/stop`,
      `/console/${pending}/force-stop`,
      `/console/${deleting}/delete`,
    ]) {
      const page = await client.get(url);
      assert.equal(page.statusCode, 409, url);
      assert.doesNotMatch(page.body, /name="version"/);
    }
  });
});

// ---- actions ----

describe("a capsul's actions", () => {
  it('start, stop and force-stop: a confirm page that says what happens, then the request for the host', async () => {
    const email = 'power@example.org';
    const client = await customer(email);
    const cases: [ObservedState, 'start' | 'stop' | 'force-stop', RegExp][] = [
      ['stopped', 'start', /boots/],
      ['running', 'stop', /shut down cleanly/],
      ['running', 'force-stop', /power is cut at once/],
    ];
    for (const [state, action, explained] of cases) {
      const vmId = await capsulIn(email, state);
      const confirm = await client.get(`/console/${vmId}/${action}`);
      assert.equal(confirm.statusCode, 200, action);
      assert.match(confirm.body, explained);
      assert.match(confirm.body, new RegExp(`<form method="post" action="/console/${vmId}/${action}"`));
      const version = versionIn(confirm.body)!;
      assert.equal(BigInt(version), await versionOf(vmStream(vmId)));
      const done = await client.post(`/console/${vmId}/${action}`, { version });
      assert.equal(done.statusCode, 303, action);
      assert.equal(done.headers.location, `/console/${vmId}`);
      const last = (await loadStream(web.db.pool, vmStream(vmId))).events.at(-1)!;
      assert.equal(last.event.type, action === 'start' ? 'VmStartRequested' : 'VmStopRequested');
      assert.deepEqual(last.metadata.by, { kind: 'customer', id: await web.db.ledger.accountIdFor(email) });
      assert.equal(
        await count(`SELECT count(*)::int AS n FROM operations WHERE vm_id = $1 AND kind = $2 AND completed IS NULL`, [vmId, action]),
        1,
      );
    }
  });

  it('delete: a confirm page that warns, then the deletion request, and the reactions run', async () => {
    const email = 'deleter@example.org';
    const client = await customer(email);
    const vmId = await capsulIn(email);
    const confirm = await client.get(`/console/${vmId}/delete`);
    assert.equal(confirm.statusCode, 200);
    assert.match(confirm.body, /cannot be undone/);
    assert.match(confirm.body, /<button type="submit" class="danger">/);
    const before = nudges;
    const done = await client.post(`/console/${vmId}/delete`, { version: versionIn(confirm.body)! });
    assert.equal(done.statusCode, 303);
    const { rows } = await web.db.pool.query('SELECT deleted, deletion_reason FROM vms WHERE id = $1', [vmId]);
    assert.ok(rows[0].deleted);
    assert.equal(rows[0].deletion_reason, 'deleted by the customer');
    assert.equal(nudges, before + 1);
    assert.match((await client.get(`/console/${vmId}`)).body, /<dt>State<\/dt><dd>deleting<\/dd>/);
  });

  it('two tabs confirming from the same page: one wins, the other is told it changed meanwhile', async () => {
    const email = 'tabs@example.org';
    const client = await customer(email);
    for (const [first, second] of [
      ['stop', 'force-stop'],
      ['delete', 'delete'],
      ['stop', 'delete'],
    ] as const) {
      const vmId = await capsulIn(email);
      const tabA = await client.get(`/console/${vmId}/${first}`);
      const tabB = await client.get(`/console/${vmId}/${second}`);
      assert.equal(versionIn(tabA.body), versionIn(tabB.body));
      const a = await client.post(`/console/${vmId}/${first}`, { _csrf: csrfIn(tabA.body)!, version: versionIn(tabA.body)! });
      assert.equal(a.statusCode, 303, `${first} then ${second}: the first`);
      const accountVersion = await versionOf(accountStream((await web.db.ledger.accountIdFor(email))!));
      const vmVersion = await versionOf(vmStream(vmId));
      const b = await client.post(`/console/${vmId}/${second}`, { _csrf: csrfIn(tabB.body)!, version: versionIn(tabB.body)! });
      assert.equal(b.statusCode, 409, `${first} then ${second}: the second`);
      assert.match(b.body, /changed meanwhile/);
      assert.match(b.body, new RegExp(`<a class="button" href="/console/${vmId}">`));
      assert.equal(await versionOf(vmStream(vmId)), vmVersion, 'the second appended nothing to the capsul');
      assert.equal(await versionOf(accountStream((await web.db.ledger.accountIdFor(email))!)), accountVersion, 'nor to the account');
    }
  });

  it('refuses a malformed confirm form with 400, changing nothing', async () => {
    const email = 'malformed@example.org';
    const client = await customer(email);
    const vmId = await capsulIn(email);
    await client.get(`/console/${vmId}/stop`);
    const version = await versionOf(vmStream(vmId));
    const forms: Record<string, string | string[]>[] = [
      {},
      { version: 'abc' },
      { version: ['1', '2'] },
      { version: '9'.repeat(40) },
      { version: '<script>' },
    ];
    for (const form of forms) {
      const response = await client.post(`/console/${vmId}/stop`, form);
      assert.equal(response.statusCode, 400, JSON.stringify(form));
      assert.match(response.body, /That form did not arrive whole/);
      assert.doesNotMatch(response.body, /<script>/);
    }
    const forged = await client.post(`/console/${vmId}/stop`, { _csrf: null, version: ['1', '2'] });
    assert.equal(forged.statusCode, 403, 'the CSRF check comes first, whatever the form holds');
    assert.equal(await versionOf(vmStream(vmId)), version);
  });
});

// ---- the negative space ----

describe('what the console refuses', () => {
  it("shows no one another customer's capsul, nor an unknown or malformed one: 404 for every page and form, and nothing changes", async () => {
    const alice = await customer('nosy-alice@example.org');
    await fund('private-bob@example.org');
    const bobs = await capsulIn('private-bob@example.org');
    const bobsVersion = await versionOf(vmStream(bobs));
    await alice.get('/console'); // a CSRF token of alice's own
    for (const url of [
      `/console/${bobs}`,
      `/console/${bobs}/stop`,
      `/console/${bobs}/delete`,
      '/console/capsul-zzzzzzzzzz',
      '/console/not-a-capsul',
      `/console/${bobs}/reboot`,
      '/console/capsul-zzzzzzzzzz/start',
    ]) {
      const page = await alice.get(url);
      assert.equal(page.statusCode, 404, url);
      assert.match(page.body, /Page not found/);
      assert.doesNotMatch(page.body, new RegExp(bobs), 'not even the id is echoed back');
    }
    for (const action of ['start', 'stop', 'force-stop', 'delete']) {
      const response = await alice.post(`/console/${bobs}/${action}`, { version: String(bobsVersion) });
      assert.equal(response.statusCode, 404, action);
    }
    assert.equal(await versionOf(vmStream(bobs)), bobsVersion);
    const { rows } = await web.db.pool.query('SELECT deleted FROM vms WHERE id = $1', [bobs]);
    assert.equal(rows[0].deleted, null);
    assert.equal(await count('SELECT count(*)::int AS n FROM operations WHERE vm_id = $1', [bobs]), 1, 'only its create operation');
  });

  it('refuses a form without a CSRF token, or with a wrong one, with 403, changing nothing', async () => {
    const email = 'csrf@example.org';
    const client = await customer(email);
    const vmId = await capsulIn(email);
    const version = String(await versionOf(vmStream(vmId)));
    await client.get('/console/create');
    for (const csrf of [null, 'wrong-token', '']) {
      assert.equal((await client.post('/console/create', { _csrf: csrf, size: 'f1-xs', os: 'debian12', keys: 'laptop' })).statusCode, 403);
      for (const action of ['stop', 'delete']) {
        const response = await client.post(`/console/${vmId}/${action}`, { _csrf: csrf, version });
        assert.equal(response.statusCode, 403, `${action} with ${csrf}`);
        assert.match(response.body, /This form has expired or did not come from this site/);
      }
    }
    assert.equal(await capsulsOf(email), 1);
    assert.equal(String(await versionOf(vmStream(vmId))), version);
    assert.equal((await web.db.pool.query('SELECT deleted FROM vms WHERE id = $1', [vmId])).rows[0].deleted, null);
  });
});

describe("a capsul's ssh line", () => {
  it("is the OS image's login user at its IPv4 address, else its IPv6 address, else none", () => {
    assert.equal(sshCommand('debian', '192.0.2.33'), 'ssh debian@192.0.2.33');
    assert.equal(sshCommand('alpine', '2001:db8::33'), 'ssh alpine@2001:db8::33');
    assert.equal(sshCommand('debian', null), null);
    assert.equal(sshCommand(null, '192.0.2.33'), null, 'an image gone from the catalogue names no user');
  });

  it('names a login user for every OS image, and the create form says it', async () => {
    const { rows } = await web.db.pool.query('SELECT id, login_user FROM os_images ORDER BY id');
    assert.deepEqual(Object.fromEntries(rows.map((row) => [row.id, row.login_user])), {
      alpine322: 'alpine',
      debian12: 'debian',
      debian13: 'debian',
      openbsd78: 'openbsd',
      rocky9: 'rocky',
      ubuntu22: 'ubuntu',
      ubuntu24: 'ubuntu',
    });
    await assert.rejects(
      web.db.admin.query(`UPDATE os_images SET login_user = 'root; rm -rf' WHERE id = 'debian12'`),
      /os_images_login_user_is_a_user_name/,
    );
    const client = await customer('ssh-line@example.org');
    const form = await client.get('/console/create');
    assert.match(form.body, /Debian 12 \(bookworm\) \(log in as debian\)<\/option>/);
  });
});
