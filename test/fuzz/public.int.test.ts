// Fuzzing the public pages, logging in and out: hostile text, wrong types, missing and repeated
// fields, wrong content types. The models are in test/fuzz/hub.ts, the properties in test/support/fuzz.ts.
// And raw request targets over a real socket, bytes that fastify's inject would have encoded first.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { assertSafeResponse, fuzzParameters, RefusalWatch } from '../support/fuzz.ts';
import { fuzzArea } from './hub.ts';

describe('fuzz: the public pages, logging in and out', () => {
  const hub = fuzzArea('public', 6);

  it('raw bytes in a request target, over a socket: no 5xx, no leak, a refusal writes nothing', async () => {
    const { web } = hub();
    await web.hub.listen({ port: 0, host: '127.0.0.1' });
    const { port } = web.hub.server.address() as net.AddressInfo;
    const watch = new RefusalWatch(web.db.admin);
    const path = fc.constantFrom('/', '/auth/login', '/console', '/auth/magic/', '/pricing?x=', '/admin/payments/');
    const raw = fc
      .uint8Array({ minLength: 1, maxLength: 40 })
      .map((bytes) => Buffer.from(bytes.filter((byte) => byte !== 0x20 && byte !== 0x0d && byte !== 0x0a)));
    await fc.assert(
      fc.asyncProperty(path, raw, async (start, bytes) => {
        await watch.before();
        const { statusCode, body } = await rawRequest(port, Buffer.concat([Buffer.from(start), bytes]));
        const about = `GET ${start}${bytes.toString('latin1')} (bytes ${bytes.toString('hex')})`;
        assert.ok(statusCode >= 100, `${about}: no answer`);
        const response = { statusCode, body } as LightMyRequestResponse;
        assertSafeResponse(response, about);
        await watch.after(response, about);
      }),
      fuzzParameters('raw request targets', 30),
    );
  });
});

/** One GET with the target's bytes exactly as given, to the listening hub: its status and body. */
function rawRequest(port: number, target: Buffer): Promise<{ statusCode: number; body: string }> {
  const request = Buffer.concat([
    Buffer.from('GET '),
    target,
    Buffer.from(' HTTP/1.1\r\nHost: capsul.test\r\nAccept: text/html\r\nConnection: close\r\n\r\n'),
  ]);
  return new Promise((resolve, reject) => {
    // Written, not ended: a half-closed socket may be dropped before its answer; Connection: close ends it.
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const statusCode = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ statusCode, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
    socket.on('error', reject);
  });
}
