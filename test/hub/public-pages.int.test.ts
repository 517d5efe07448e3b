// The public pages over HTTP against a real database: the catalogue's prices, security headers,
// friendly error pages for browsers and JSON for everything else.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildHub } from '../../src/hub/app.ts';
import { testDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let hub: FastifyInstance;
before(async () => {
  db = await testDatabase({ host: false });
  hub = await buildHub({ pool: db.pool, supportEmail: 'help@capsul.example' });
});
after(async () => {
  await hub.close();
  await db.close();
});

const page = (url: string) => hub.inject({ method: 'GET', url, headers: { accept: 'text/html' } });

describe('public pages', () => {
  for (const url of ['/', '/pricing', '/faq', '/support']) {
    it(`serves ${url} as HTML with a strict Content-Security-Policy and no outside assets`, async () => {
      const response = await page(url);
      assert.equal(response.statusCode, 200);
      assert.equal(response.headers['content-type'], 'text/html; charset=utf-8');
      const csp = String(response.headers['content-security-policy']);
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.match(response.body, /^<!doctype html>\n<html lang="en">/);
      assert.doesNotMatch(response.body, /(src|href)="(https?:)?\/\//, 'nothing from other sites');
      assert.doesNotMatch(response.body, /<script/, 'no JavaScript');
    });
  }

  it("shows the catalogue's sizes and prices, in price order", async () => {
    const { body } = await page('/');
    const rows = [...body.matchAll(/<th scope="row">([^<]+)<\/th>\s*<td>\$([^<]+)<\/td>/g)].map((m) => [m[1], m[2]]);
    assert.deepEqual(rows, [
      ['f1-xs', '5.33'],
      ['f1-s', '7.16'],
      ['f1-m', '12.50'],
      ['f1-l', '20.50'],
      ['f1-x', '27.50'],
      ['f1-xx', '50.00'],
    ]);
    assert.match(body, /Debian 12 \(bookworm\)/);
    assert.doesNotMatch(body, /Ubuntu 22\.04/, 'deprecated images are not offered');
  });

  it('follows a price change in the catalogue', async () => {
    await db.admin.query(`UPDATE vm_sizes SET dollars_per_month = 6.00 WHERE id = 'f1-xs'`);
    try {
      assert.match((await page('/pricing')).body, /<th scope="row">f1-xs<\/th>\s*<td>\$6\.00<\/td>/);
    } finally {
      await db.admin.query(`UPDATE vm_sizes SET dollars_per_month = 5.33 WHERE id = 'f1-xs'`);
    }
  });

  it('gives the support address', async () => {
    assert.match((await page('/support')).body, /<a href="mailto:help@capsul\.example">help@capsul\.example<\/a>/);
  });

  it('escapes what it shows from the database', async () => {
    await db.admin.query(`INSERT INTO os_images VALUES ('evil', 'x.qcow2', '<script>alert(1)</script>', false, 'evil')`);
    try {
      const { body } = await page('/');
      assert.doesNotMatch(body, /<script>alert/);
      assert.match(body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    } finally {
      await db.admin.query(`DELETE FROM os_images WHERE id = 'evil'`);
    }
  });

  it('serves its one stylesheet from itself', async () => {
    const response = await hub.inject({ method: 'GET', url: '/static/capsul.css' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/css; charset=utf-8');
    assert.match(response.body, /table\.sizes/);
  });

  it('has an icon: linked from every page, served from itself, and /favicon.ico leads to it', async () => {
    assert.match((await page('/')).body, /<link rel="icon" href="\/static\/favicon\.svg" type="image\/svg\+xml">/);
    const icon = await hub.inject({ method: 'GET', url: '/static/favicon.svg' });
    assert.equal(icon.statusCode, 200);
    assert.equal(icon.headers['content-type'], 'image/svg+xml');
    assert.match(icon.body, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    const legacy = await hub.inject({ method: 'GET', url: '/favicon.ico' });
    assert.equal(legacy.statusCode, 301);
    assert.equal(legacy.headers.location, '/static/favicon.svg');
  });

  it('answers an unknown page with a friendly 404 page, and a script with JSON', async () => {
    const browser = await page('/no/such/page');
    assert.equal(browser.statusCode, 404);
    assert.match(browser.body, /<h1>Page not found<\/h1>/);
    const script = await hub.inject({ method: 'GET', url: '/no/such/page' });
    assert.equal(script.statusCode, 404);
    assert.deepEqual(script.json(), { error: 'not found' });
  });

  it('shows a page, not a stack trace, when the database fails', async () => {
    const broken = await buildHub({
      pool: {
        query: async () => {
          throw new Error('connection lost at /secret/path');
        },
      } as never,
    });
    try {
      const response = await broken.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
      assert.equal(response.statusCode, 500);
      assert.match(response.body, /<h1>Something went wrong<\/h1>/);
      assert.doesNotMatch(response.body, /secret|at \w+ \(|Error:/);
      const spoke = await broken.inject({
        method: 'POST',
        url: '/spoke/v1/heartbeat',
        headers: { 'x-capsul-host': 'a', authorization: `Bearer ${'x'.repeat(43)}` },
        payload: { capacity: { memoryMb: 1, vcpus: 1 }, vms: [], agentVersion: 'test' },
      });
      assert.equal(spoke.statusCode, 500);
      assert.deepEqual(spoke.json(), { error: 'something went wrong on our side' }, 'the spoke API hides the detail too');
    } finally {
      await broken.close();
    }
  });
});
