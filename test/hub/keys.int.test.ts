// The customer's saved SSH keys over real HTTP against a real database: list, add, delete, and the
// refusals (malformed keys, names, duplicates, the cap, CSRF, form shapes), each storing nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operator, sshKey } from '../support/db.ts';
import { webHarness, type WebClient, type WebHarness } from '../support/web.ts';

let web: WebHarness;
before(async () => {
  web = await webHarness();
});
after(() => web.close());

// Made with ssh-keygen; fingerprints as `ssh-keygen -lf` prints them.
const laptopKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINOUrsfH1zuG6BxITyx+CTSBqBzLuVKiXvvZj10jSiIW alice@laptop';
const laptopFingerprint = 'SHA256:0G7HHxNZG03ZEEZP6LjCP+33YbZbnYlQETygg6GD6mg';
const rsaKeyWithoutComment =
  'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDgvBbbKA9Za85fLpnF7+lHQaLM+volj2ZTQR9AG/u9eHWXVnZJccumH8EecdgHzsqFkFXuuMyJVgth+jYgNvNOwsDGDa2+kJZc2JULsAxiyg1/4iKQqJnfsDeLLA++5QxWXJ4gYqj1ZQGYpO3xCwEIJZ1jWuzlWJCIT171EVWTaGkGHAZuVmoJZlEYG8wkVF4Dz8ZUYtC+CGKV0YVHaiLpaWxWXsRRwm4xrzQ5JMedCIE5aKH6Az/lxyDDXo1Nbsb1XohJG/arRha+cAmC//5Lg0dVFa9g0M/34DOFIgIt78cj5Umk0Bm74t6Eu0WtT8BYK9stmcj3xTr/fHFSYXUF';
const rsaFingerprint = 'SHA256:t0jdWyCZs8KfzTbWriL6DqXNqbaR78z8KHrI4eHaq/c';
const testKeyFingerprint = 'SHA256:oZ61ZTVu5SWR/dlFjmYNW7pw/fRVmDO60hP3uxz427U';
const keyBlob = (line: string) => line.split(' ')[1]!;

async function keysOf(email: string): Promise<{ name: string; content: string }[]> {
  const { rows } = await web.db.pool.query('SELECT name, content FROM ssh_public_keys WHERE email = $1 ORDER BY name', [email]);
  return rows;
}

/** Adds a key through the page's form, as a browser would. */
const addKey = (client: WebClient, form: Record<string, string | string[] | null>) => client.submit('/console/ssh', '/console/ssh', form);

describe('SSH keys: logged out', () => {
  it('sends a visitor to the login page and back', async () => {
    const response = await web.client().get('/console/ssh');
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, '/auth/login?next=%2Fconsole%2Fssh');
  });

  it('refuses a form posted without a session, even with a valid token', async () => {
    const client = web.client();
    await client.get('/auth/login');
    const response = await client.post('/console/ssh', { key: sshKey, name: 'x' });
    assert.equal(response.statusCode, 303);
    assert.match(String(response.headers.location), /^\/auth\/login\?next=/);
    const { rows } = await web.db.pool.query('SELECT count(*)::int AS n FROM ssh_public_keys');
    assert.equal(rows[0].n, 0);
  });
});

describe('SSH keys: list and add', () => {
  it('shows an accessible empty page with the add form, before the customer has any account', async () => {
    const client = await web.loggedIn('nokeys@example.org');
    assert.equal(await web.db.ledger.accountIdFor('nokeys@example.org'), null, 'no payment, no account');
    const page = await client.get('/console/ssh');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /<h1>SSH keys<\/h1>/);
    assert.match(page.body, /You have no saved keys yet/);
    assert.match(page.body, /<label for="key">/);
    assert.match(page.body, /<textarea id="key" name="key"/);
    assert.match(page.body, /<label for="name">/);
    assert.match(page.body, /name="_csrf" value="[^"]+"/);
  });

  it('names a key after its comment, and lists its type, fingerprint and date', async () => {
    const client = await web.loggedIn('alice@example.org');
    const added = await addKey(client, { key: `  ${laptopKey}\n`, name: '  ' });
    assert.equal(added.statusCode, 303);
    assert.equal(added.headers.location, '/console/ssh?done=added');
    assert.deepEqual(await keysOf('alice@example.org'), [{ name: 'alice@laptop', content: laptopKey }]);
    const page = await client.get(String(added.headers.location));
    assert.match(page.body, /The key was saved/);
    assert.match(page.body, /<caption>Your saved keys \(1 of at most 50\)<\/caption>/);
    assert.match(page.body, /<th scope="col">Fingerprint<\/th>/);
    assert.match(page.body, /<th scope="row">alice@laptop/);
    assert.match(page.body, /<td>ssh-ed25519<\/td>/);
    assert.ok(page.body.includes(`<code>${laptopFingerprint}</code>`), 'the fingerprint ssh-keygen -lf prints');
    assert.match(page.body, /<td>2026-11-01<\/td>/, 'the day it was added, by the hub clock');
  });

  it('takes a typed name over the comment, and an RSA key without a comment when named', async () => {
    const client = await web.loggedIn('named@example.org');
    assert.equal((await addKey(client, { key: sshKey, name: 'work laptop' })).statusCode, 303);
    assert.equal((await addKey(client, { key: rsaKeyWithoutComment, name: 'old desktop' })).statusCode, 303);
    assert.deepEqual(
      (await keysOf('named@example.org')).map((key) => key.name),
      ['old desktop', 'work laptop'],
    );
    const page = await client.get('/console/ssh');
    assert.ok(page.body.includes(rsaFingerprint));
    assert.ok(page.body.includes(testKeyFingerprint));
    assert.match(page.body, /<span class="muted">test@capsul<\/span>/, 'the comment is shown under a different name');
  });

  it('asks for a name when the key has no comment, keeping what was typed', async () => {
    const client = await web.loggedIn('nameless@example.org');
    const response = await addKey(client, { key: rsaKeyWithoutComment, name: '' });
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /role="alert"[^>]*>this key has no comment to name it by: give it a name/);
    assert.ok(response.body.includes(`${rsaKeyWithoutComment}</textarea>`), 'the key typed is in the form again');
    assert.match(response.body, /aria-invalid="true"/);
    assert.deepEqual(await keysOf('nameless@example.org'), []);
  });

  it('refuses what is not an SSH public key, and stores nothing', async () => {
    const client = await web.loggedIn('malformed@example.org');
    const cases = [
      '',
      'hello',
      '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----',
      'ssh-ed25519 not!base64 x',
      `ssh-rsa ${keyBlob(laptopKey)} wrong type`,
      `${laptopKey}\n${sshKey}`,
      `ssh-ed25519 ${'A'.repeat(20_000)}`,
    ];
    for (const key of cases) {
      const response = await addKey(client, { key, name: 'a name' });
      assert.equal(response.statusCode, 400, JSON.stringify(key.slice(0, 40)));
      assert.match(response.body, /class="error" role="alert"/);
      assert.match(response.body, /value="a name"/, 'the name typed is in the form again');
    }
    assert.deepEqual(await keysOf('malformed@example.org'), []);
  });

  it('tells a customer who pasted a private key so, without sending it back', async () => {
    const client = await web.loggedIn('private@example.org');
    const secret = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAsecret\n-----END OPENSSH PRIVATE KEY-----\n';
    const response = await addKey(client, { key: secret, name: '' });
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /that is a private key: keep it secret/);
    assert.ok(!response.body.includes('b3BlbnNzaC1rZXktdjEAAAAAsecret'));
    assert.deepEqual(await keysOf('private@example.org'), []);
  });

  it('refuses names that are too long or hold control characters; takes 100 characters of any script', async () => {
    const client = await web.loggedIn('names@example.org');
    const long = await addKey(client, { key: laptopKey, name: 'x'.repeat(101) });
    assert.equal(long.statusCode, 400);
    assert.match(long.body, /at most 100 characters/);
    for (const name of ['tab\there', 'rtl\u202eevil']) {
      const response = await addKey(client, { key: laptopKey, name });
      assert.equal(response.statusCode, 400, JSON.stringify(name));
      assert.match(response.body, /printable characters/);
    }
    // Other control characters never get as far as the name's own rule: the hub's edge refuses them in any field.
    const bell = await addKey(client, { key: laptopKey, name: 'bell\u0007' });
    assert.equal(bell.statusCode, 400);
    assert.match(bell.body, /The field &quot;name&quot; holds a control character \(U\+0007\)/);
    assert.deepEqual(await keysOf('names@example.org'), []);
    const unicode = 'é'.repeat(50) + '鍵'.repeat(50);
    assert.equal((await addKey(client, { key: laptopKey, name: `  ${unicode} ` })).statusCode, 303);
    assert.deepEqual(
      (await keysOf('names@example.org')).map((key) => key.name),
      [unicode],
    );
  });

  it('refuses a second key of the same name, and the same key twice, in a friendly way', async () => {
    const client = await web.loggedIn('dupes@example.org');
    assert.equal((await addKey(client, { key: laptopKey, name: 'mine' })).statusCode, 303);
    const sameName = await addKey(client, { key: sshKey, name: 'mine' });
    assert.equal(sameName.statusCode, 409);
    assert.match(sameName.body, /you already have a key named &quot;mine&quot;: choose another name/);
    const sameKey = await addKey(client, { key: laptopKey.replace('alice@laptop', 'another comment'), name: 'other' });
    assert.equal(sameKey.statusCode, 409);
    assert.match(sameKey.body, /this key is already saved, named &quot;mine&quot;/);
    assert.deepEqual(await keysOf('dupes@example.org'), [{ name: 'mine', content: laptopKey }]);
  });

  it('lets two customers use the same name and the same key', async () => {
    const bob = await web.loggedIn('bob-same@example.org');
    const carol = await web.loggedIn('carol-same@example.org');
    assert.equal((await addKey(bob, { key: laptopKey, name: 'laptop' })).statusCode, 303);
    assert.equal((await addKey(carol, { key: laptopKey, name: 'laptop' })).statusCode, 303);
  });

  it('lets exactly one of two concurrent adds of the same name through', async () => {
    const client = await web.loggedIn('race@example.org');
    await client.get('/console/ssh');
    const responses = await Promise.all([
      client.post('/console/ssh', { key: laptopKey, name: 'same' }),
      client.post('/console/ssh', { key: rsaKeyWithoutComment, name: 'same' }),
    ]);
    assert.deepEqual(responses.map((r) => r.statusCode).sort(), [303, 409]);
    assert.equal((await keysOf('race@example.org')).length, 1);
  });

  it('lets exactly one of two concurrent adds of the same key through', async () => {
    const client = await web.loggedIn('race-key@example.org');
    await client.get('/console/ssh');
    const responses = await Promise.all([
      client.post('/console/ssh', { key: laptopKey, name: 'one' }),
      client.post('/console/ssh', { key: laptopKey, name: 'two' }),
    ]);
    assert.deepEqual(responses.map((r) => r.statusCode).sort(), [303, 409]);
    assert.equal((await keysOf('race-key@example.org')).length, 1);
  });

  it('keeps at most 50 keys per customer', async () => {
    const client = await web.loggedIn('many@example.org');
    await web.db.pool.query(
      `INSERT INTO ssh_public_keys (email, name, content, created)
       SELECT 'many@example.org', 'key ' || i, 'ssh-ed25519 AAAA' || i, now() FROM generate_series(1, 50) i`,
    );
    const response = await addKey(client, { key: laptopKey, name: 'one more' });
    assert.equal(response.statusCode, 409);
    assert.match(response.body, /at most 50 keys/);
    assert.equal((await keysOf('many@example.org')).length, 50);
  });

  it('shows names and comments with script in them escaped', async () => {
    const client = await web.loggedIn('script@example.org');
    const named = await addKey(client, { key: laptopKey, name: '<script>alert(1)</script>' });
    assert.equal(named.statusCode, 303);
    const commented = await addKey(client, { key: `${sshKey.split(' ').slice(0, 2).join(' ')} <img src=x onerror=alert(2)>`, name: '' });
    assert.equal(commented.statusCode, 303);
    const page = await client.get('/console/ssh');
    assert.ok(page.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(page.body.includes('&lt;img src=x onerror=alert(2)&gt;'));
    assert.doesNotMatch(page.body, /<script>|<img src=x/);
    const refused = await addKey(client, { key: '<script>alert(3)</script>', name: '"><script>alert(4)</script>' });
    assert.equal(refused.statusCode, 400);
    assert.doesNotMatch(refused.body, /<script>/);
    assert.ok(refused.body.includes('&quot;&gt;&lt;script&gt;alert(4)'));
  });
});

describe('SSH keys: delete', () => {
  it('deletes a key by a POST and says capsuls that have it keep it', async () => {
    const client = await web.loggedIn('delete@example.org');
    await addKey(client, { key: laptopKey, name: 'old' });
    await addKey(client, { key: sshKey, name: 'kept' });
    const page = await client.get('/console/ssh');
    assert.match(page.body, /aria-label="Delete the key old"/);
    assert.match(page.body, /deleting a key here does not remove it from capsuls that already have it/);
    const deleted = await client.post('/console/ssh/delete', { name: 'old' });
    assert.equal(deleted.statusCode, 303);
    assert.equal(deleted.headers.location, '/console/ssh?done=deleted');
    assert.deepEqual(
      (await keysOf('delete@example.org')).map((key) => key.name),
      ['kept'],
    );
    assert.match((await client.get('/console/ssh?done=deleted')).body, /Capsuls that already have it keep it/);
    const again = await client.post('/console/ssh/delete', { name: 'old' });
    assert.equal(again.statusCode, 404);
    assert.match(again.body, /no saved key named &quot;old&quot;/);
  });

  it('leaves a capsul created with the key as it was', async () => {
    const email = 'capsul-owner@example.org';
    const client = await web.loggedIn(email);
    await addKey(client, { key: laptopKey, name: '' });
    await web.db.ledger.recordPayment({ email, amountCents: 2000, cause: operator });
    const { vmId } = await web.db.ledger.createVm({ email, size: 'f1-xs', os: 'debian12', sshPublicKeys: [laptopKey], cause: operator });
    await client.submit('/console/ssh', '/console/ssh/delete', { name: 'alice@laptop' });
    assert.deepEqual(await keysOf(email), []);
    const { rows } = await web.db.pool.query('SELECT ssh_public_keys FROM vms WHERE id = $1', [vmId]);
    assert.deepEqual(rows[0].ssh_public_keys, [laptopKey]);
  });

  it("never shows or deletes another customer's keys", async () => {
    const owner = await web.loggedIn('owner@example.org');
    await addKey(owner, { key: laptopKey, name: 'private name' });
    const other = await web.loggedIn('other@example.org');
    const page = await other.get('/console/ssh');
    assert.doesNotMatch(page.body, /private name/);
    assert.ok(!page.body.includes(laptopFingerprint));
    const response = await other.post('/console/ssh/delete', { name: 'private name' });
    assert.equal(response.statusCode, 404);
    assert.deepEqual(
      (await keysOf('owner@example.org')).map((key) => key.name),
      ['private name'],
    );
  });
});

describe('SSH keys: refusals', () => {
  it('refuses adds and deletes without a CSRF token, or with a wrong one, with 403', async () => {
    const client = await web.loggedIn('csrf-keys@example.org');
    await addKey(client, { key: sshKey, name: 'stays' });
    await client.get('/console/ssh');
    assert.equal((await client.post('/console/ssh', { key: laptopKey, name: 'new', _csrf: null })).statusCode, 403);
    assert.equal((await client.post('/console/ssh', { key: laptopKey, name: 'new', _csrf: 'x'.repeat(40) })).statusCode, 403);
    assert.equal((await client.post('/console/ssh/delete', { name: 'stays', _csrf: null })).statusCode, 403);
    assert.deepEqual(
      (await keysOf('csrf-keys@example.org')).map((key) => key.name),
      ['stays'],
    );
  });

  it('refuses fields of the wrong shape and huge bodies, storing nothing', async () => {
    const client = await web.loggedIn('shapes@example.org');
    await client.get('/console/ssh');
    assert.equal((await client.post('/console/ssh', { key: [laptopKey, sshKey], name: 'two' })).statusCode, 400);
    assert.equal((await client.post('/console/ssh', { key: laptopKey, name: ['a', 'b'] })).statusCode, 400);
    assert.equal((await client.post('/console/ssh', { key: 'x'.repeat(200_000), name: 'huge' })).statusCode, 413);
    assert.equal((await client.post('/console/ssh/delete', { name: ['a', 'b'] })).statusCode, 400);
    assert.deepEqual(await keysOf('shapes@example.org'), []);
  });
});
