// The hub client without a network: HUB_URL rules (one hub or several), headers, timeouts, failover and the validation of answers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  HubClient,
  HubRejectedError,
  HubUnavailableError,
  HubUrlError,
  TokenRefusedError,
  parseHubUrl,
  parseHubUrls,
} from '../../src/spoke/hub-client.ts';

const token = 'secret-token-0123456789abcdef';
type Call = { url: string; method: string; headers: Record<string, string>; body: unknown };

function client(answer: (call: Call) => Response | Promise<Response>, requestTimeoutMs = 1_000) {
  const calls: Call[] = [];
  const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const call = {
      url: String(input),
      method: init?.method ?? 'GET',
      headers: init?.headers as Record<string, string>,
      body: init?.body === undefined ? undefined : JSON.parse(init.body as string),
    };
    calls.push(call);
    return answer(call);
  }) as typeof fetch;
  return {
    hub: new HubClient({ hubUrl: 'https://hub.example.org/capsul', hostId: 'host-a', token, fetch: fakeFetch, requestTimeoutMs }),
    calls,
  };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const heartbeat = { capacity: { memoryMb: 1024, vcpus: 2 }, vms: [], agentVersion: 'test' };
const validOperation = { id: 'op-1', kind: 'stop', vmId: 'capsul-aaaaaaaaaa', createdAt: '2031-01-01T00:00:00.000Z' };

describe('HUB_URL', () => {
  for (const url of [
    'https://hub.example.org',
    'https://hub.example.org:8443/capsul',
    'http://127.0.0.1:3000',
    'http://127.8.9.10',
    'http://localhost:3000',
    'http://[::1]:3000',
  ]) {
    it(`accepts ${url}`, () => {
      assert.doesNotThrow(() => parseHubUrl(url));
    });
  }

  for (const [url, reason] of [
    ['http://hub.example.org', /must use https \(plain http only to 127\.0\.0\.0\/8, ::1 or localhost\), not http:\/\/hub\.example\.org/],
    ['http://10.0.0.5:3000', /must use https/],
    ['http://127.0.0.1.example.org', /must use https/],
    ['http://[::ffff:127.0.0.1]', /must use https/],
    ['ftp://hub.example.org', /must be an https URL/],
    ['hub.example.org', /must be a URL/],
    ['https://user:pass@hub.example.org', /user name or password/],
    ['https://hub.example.org/?x=1', /query or fragment/],
  ] as const) {
    it(`refuses ${url}`, () => {
      assert.throws(
        () => parseHubUrl(url),
        (error: Error) => error instanceof HubUrlError && reason.test(error.message),
      );
    });
  }

  it('keeps a path prefix, so a hub behind a reverse proxy works', async () => {
    const { hub, calls } = client(() => json(200, { serverTime: '2031-01-01T00:00:00.000Z' }));
    await hub.heartbeat(heartbeat);
    assert.equal(calls[0]!.url, 'https://hub.example.org/capsul/spoke/v1/heartbeat');
  });
});

describe('hub client requests', () => {
  it('sends the bearer token and the host id on every endpoint', async () => {
    const { hub, calls } = client((call) => {
      if (call.url.endsWith('/heartbeat')) return json(200, { serverTime: '2031-01-01T00:00:00.000Z' });
      if (call.url.includes('/operations')) return json(200, { operations: [] });
      return json(200, { results: [] });
    });
    await hub.heartbeat(heartbeat);
    await hub.operations(25_000);
    await hub.postReports([
      { id: 'r1', type: 'deleted', vmId: 'capsul-aaaaaaaaaa', operationId: null, observedAt: '2031-01-01T00:00:00.000Z' },
    ]);
    assert.deepEqual(
      calls.map((call) => `${call.method} ${new URL(call.url).pathname}${new URL(call.url).search}`),
      ['POST /capsul/spoke/v1/heartbeat', 'GET /capsul/spoke/v1/operations?waitMs=25000', 'POST /capsul/spoke/v1/reports'],
    );
    for (const call of calls) {
      assert.equal(call.headers.authorization, `Bearer ${token}`);
      assert.equal(call.headers['x-capsul-host'], 'host-a');
    }
    assert.deepEqual(calls[0]!.body, heartbeat);
  });

  it('asks for no longer a wait than the protocol allows', async () => {
    const { hub, calls } = client(() => json(200, { operations: [] }));
    await hub.operations(999_999);
    assert.match(calls[0]!.url, /waitMs=30000$/);
  });

  it('sends no empty report batch and refuses one over the limit', async () => {
    const { hub, calls } = client(() => json(200, { results: [] }));
    assert.deepEqual(await hub.postReports([]), []);
    const many = Array.from({ length: 101 }, (_, i) => ({
      id: `r${i}`,
      type: 'deleted' as const,
      vmId: 'capsul-aaaaaaaaaa',
      operationId: null,
      observedAt: '2031-01-01T00:00:00.000Z',
    }));
    await assert.rejects(hub.postReports(many), /at most 100 reports/);
    assert.equal(calls.length, 0);
  });
});

describe('hub client answers', () => {
  for (const status of [401, 403]) {
    it(`raises TokenRefusedError on ${status}, without the token in its message`, async () => {
      const { hub } = client(() => json(status, { error: 'unknown host or wrong token' }));
      await assert.rejects(
        hub.heartbeat(heartbeat),
        (error: Error) => error instanceof TokenRefusedError && error.status === status && !error.message.includes(token),
      );
    });
  }

  for (const status of [500, 502, 503, 408, 429, 404, 405, 409, 415]) {
    it(`treats ${status} as the hub being unavailable (retry)`, async () => {
      const { hub } = client(() => json(status, { message: 'try later' }));
      await assert.rejects(
        hub.operations(0),
        (error: Error) => error instanceof HubUnavailableError && error.status === status && /try later/.test(error.message),
      );
    });
  }

  for (const status of [400, 413, 422]) {
    it(`treats ${status} as the body refused as malformed (retrying it unchanged will not help)`, async () => {
      const { hub } = client(() => json(status, { message: 'body/reports/0 must have required property id' }));
      await assert.rejects(
        hub.postReports([
          { id: 'r1', type: 'deleted', vmId: 'capsul-aaaaaaaaaa', operationId: null, observedAt: '2031-01-01T00:00:00.000Z' },
        ]),
        HubRejectedError,
      );
    });
  }

  it('treats a network failure as the hub being unavailable, naming the cause', async () => {
    const { hub } = client(() => {
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    });
    await assert.rejects(
      hub.heartbeat(heartbeat),
      (error: Error) => error instanceof HubUnavailableError && /ECONNREFUSED/.test(error.message),
    );
  });

  it('gives up on a request after its timeout', async () => {
    const neverAnswers = ((_: unknown, init?: RequestInit) =>
      new Promise((_resolve, reject) =>
        init!.signal!.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))),
      )) as typeof fetch;
    const hub = new HubClient({ hubUrl: 'https://hub.example.org', hostId: 'host-a', token, requestTimeoutMs: 20, fetch: neverAnswers });
    const keepAlive = setTimeout(() => {}, 5_000); // AbortSignal.timeout does not hold the event loop open; a real socket would
    try {
      await assert.rejects(
        hub.heartbeat(heartbeat),
        (error: Error) => error instanceof HubUnavailableError && /no answer within 20 ms/.test(error.message),
      );
    } finally {
      clearTimeout(keepAlive);
    }
  });

  for (const [what, body] of [
    ['not JSON', 'not json'],
    ['no serverTime', JSON.stringify({})],
    ['a serverTime that is not a time', JSON.stringify({ serverTime: 'soon' })],
  ] as const) {
    it(`refuses a heartbeat answer with ${what}`, async () => {
      const { hub } = client(() => new Response(body, { status: 200 }));
      await assert.rejects(hub.heartbeat(heartbeat), HubUnavailableError);
    });
  }

  it('refuses an operations answer without a list', async () => {
    const { hub } = client(() => json(200, { operations: 'none' }));
    await assert.rejects(hub.operations(0), /without an operations list/);
  });

  it('returns valid operations and sets aside malformed ones that can still be reported', async () => {
    const { hub } = client(() =>
      json(200, {
        operations: [
          validOperation,
          { ...validOperation, id: 'op-2', kind: 'reboot' },
          { ...validOperation, id: 'op-3', kind: 'create' },
          { ...validOperation, id: 'op-4', kind: 'create', spec: { memoryMb: -1, vcpus: 1, imageFile: 'x', sshPublicKeys: [] } },
          {
            ...validOperation,
            id: 'op-5',
            kind: 'create',
            spec: { memoryMb: 1024, vcpus: 1, imageFile: 'debian.qcow2', sshPublicKeys: ['ssh-ed25519 AAAA'], extra: true },
          },
        ],
      }),
    );
    const { operations, malformed } = await hub.operations(0);
    assert.deepEqual(operations, [
      validOperation,
      {
        ...validOperation,
        id: 'op-5',
        kind: 'create',
        spec: { memoryMb: 1024, vcpus: 1, imageFile: 'debian.qcow2', sshPublicKeys: ['ssh-ed25519 AAAA'] },
      },
    ]);
    assert.deepEqual(
      malformed.map(({ id, problem }) => [id, problem]),
      [
        ['op-2', 'unknown kind "reboot"'],
        ['op-3', 'a create without a spec'],
        ['op-4', 'spec.memoryMb must be a positive integer'],
      ],
    );
  });

  it('refuses an operations answer holding an operation without an id', async () => {
    const { hub } = client(() => json(200, { operations: [{ ...validOperation, id: undefined }] }));
    await assert.rejects(hub.operations(0), /without a usable id/);
  });

  it('validates report results', async () => {
    const report = {
      id: 'r1',
      type: 'deleted' as const,
      vmId: 'capsul-aaaaaaaaaa',
      operationId: null,
      observedAt: '2031-01-01T00:00:00.000Z',
    };
    const ok = client(() => json(200, { results: [{ id: 'r1', status: 'refused', error: 'not yours' }] }));
    assert.deepEqual(await ok.hub.postReports([report]), [{ id: 'r1', status: 'refused', error: 'not yours' }]);
    const bad = client(() => json(200, { results: [{ id: 'r1', status: 'maybe' }] }));
    await assert.rejects(bad.hub.postReports([report]), /malformed result/);
  });

  it('refuses an answer larger than it is willing to read', async () => {
    const { hub } = client(() => new Response('x'.repeat(5 * 1024 * 1024), { status: 200 }));
    await assert.rejects(hub.operations(0), /larger than/);
  });
});

describe('HUB_URL with several hubs', () => {
  it('accepts a comma-separated list, in order', () => {
    assert.deepEqual(parseHubUrls('http://127.0.0.1:3001, http://127.0.0.1:3002/').map(String), [
      'http://127.0.0.1:3001/',
      'http://127.0.0.1:3002/',
    ]);
  });

  for (const [text, reason] of [
    ['http://127.0.0.1:3001,', /^HUB_URL must be one hub URL or several separated by commas, with none empty/],
    ['http://127.0.0.1:3001,,http://127.0.0.1:3002', /with none empty/],
    ['http://127.0.0.1:3001,http://127.0.0.1:3001/', /^HUB_URL lists http:\/\/127\.0\.0\.1:3001\/ twice$/],
    ['https://hub-a.example.org,http://hub-b.example.org', /^HUB_URL must use https/],
  ] as const) {
    it(`refuses ${JSON.stringify(text)} in one line naming HUB_URL`, () => {
      assert.throws(
        () => parseHubUrls(text),
        (error: Error) => error instanceof HubUrlError && reason.test(error.message) && !error.message.includes('\n'),
      );
    });
  }
});

describe('failover between hubs', () => {
  const hubA = 'https://hub-a.example.org';
  const hubB = 'https://hub-b.example.org';
  const refused = () => {
    throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
  };
  const serverTime = () => json(200, { serverTime: '2031-01-01T00:00:00.000Z' });

  function twoHubs(answer: (hub: string, call: Call) => Response | Promise<Response>) {
    const calls: string[] = [];
    const lines: string[] = [];
    const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      calls.push(url.origin);
      return answer(url.origin, {
        url: String(input),
        method: init?.method ?? 'GET',
        headers: init?.headers as Record<string, string>,
        body: undefined,
      });
    }) as typeof fetch;
    const hub = new HubClient({
      hubUrl: `${hubA},${hubB}`,
      hostId: 'host-a',
      token,
      fetch: fakeFetch,
      requestTimeoutMs: 1_000,
      log: (line) => lines.push(line),
    });
    return { hub, calls, lines };
  }

  it('talks to the first hub while it answers', async () => {
    const { hub, calls, lines } = twoHubs(() => serverTime());
    await hub.heartbeat(heartbeat);
    await hub.heartbeat(heartbeat);
    assert.deepEqual(calls, [hubA, hubA]);
    assert.deepEqual(lines, []);
  });

  it('sends the same request to the next hub when one is unreachable, says so once, and sticks with it', async () => {
    let aDown = true;
    const { hub, calls, lines } = twoHubs((origin) => (origin === hubA && aDown ? refused() : serverTime()));
    await hub.heartbeat(heartbeat);
    aDown = false; // the first hub is back: the client stays where it works
    await hub.heartbeat(heartbeat);
    assert.deepEqual(calls, [hubA, hubB, hubB]);
    assert.deepEqual(lines, [`switched to hub ${hubB}/ (${hubA}: POST /spoke/v1/heartbeat: ECONNREFUSED)`]);
    assert.ok(!lines.join('\n').includes(token));
    assert.equal(hub.hubUrl, `${hubB}/`);
  });

  it('goes back to the first hub, in order, when the one it uses fails', async () => {
    let down = hubA;
    const { hub, calls, lines } = twoHubs((origin) => (origin === down ? refused() : serverTime()));
    await hub.heartbeat(heartbeat);
    down = hubB;
    await hub.heartbeat(heartbeat);
    assert.deepEqual(calls, [hubA, hubB, hubB, hubA]);
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /^switched to hub https:\/\/hub-a\.example\.org\/ \(https:\/\/hub-b\.example\.org: /);
  });

  for (const [what, status] of [
    ['a 5xx', 503],
    ["a proxy's 404", 404],
  ] as const) {
    it(`fails over on ${what}`, async () => {
      const { hub, calls } = twoHubs((origin) => (origin === hubA ? json(status, { error: 'down' }) : serverTime()));
      await hub.heartbeat(heartbeat);
      assert.deepEqual(calls, [hubA, hubB]);
    });
  }

  it('fails over on an answer it cannot use', async () => {
    const { hub, calls } = twoHubs((origin) =>
      origin === hubA ? json(200, {}) : json(200, { results: [{ id: 'r1', status: 'duplicate' }] }),
    );
    const results = await hub.postReports([
      { id: 'r1', type: 'deleted', vmId: 'capsul-aaaaaaaaaa', operationId: null, observedAt: '2031-01-01T00:00:00.000Z' },
    ]);
    assert.deepEqual(calls, [hubA, hubB]);
    assert.deepEqual(results, [{ id: 'r1', status: 'duplicate' }]);
  });

  it('fails over a long poll whose hub dies under it', async () => {
    const { hub, calls } = twoHubs((origin) => (origin === hubA ? refused() : json(200, { operations: [validOperation] })));
    const { operations } = await hub.operations(25_000);
    assert.deepEqual(calls, [hubA, hubB]);
    assert.deepEqual(
      operations.map((operation) => operation.id),
      ['op-1'],
    );
  });

  it('never fails over on a refused token: it is final on every hub', async () => {
    const { hub, calls } = twoHubs(() => json(401, { error: 'unknown host or wrong token' }));
    await assert.rejects(hub.heartbeat(heartbeat), TokenRefusedError);
    assert.deepEqual(calls, [hubA]);
  });

  it('never fails over on a refused body: the other hub would refuse it too', async () => {
    const { hub, calls } = twoHubs(() => json(400, { error: 'malformed reports' }));
    await assert.rejects(
      hub.postReports([
        { id: 'r1', type: 'deleted', vmId: 'capsul-aaaaaaaaaa', operationId: null, observedAt: '2031-01-01T00:00:00.000Z' },
      ]),
      HubRejectedError,
    );
    assert.deepEqual(calls, [hubA]);
  });

  it('tries each hub once per call, then says none answered', async () => {
    const { hub, calls, lines } = twoHubs(() => refused());
    await assert.rejects(
      hub.heartbeat(heartbeat),
      (error: Error) =>
        error instanceof HubUnavailableError &&
        error.status === null &&
        /^no hub answered \(https:\/\/hub-a\.example\.org: .*ECONNREFUSED; https:\/\/hub-b\.example\.org: .*ECONNREFUSED\)$/.test(
          error.message,
        ),
    );
    assert.deepEqual(calls, [hubA, hubB]);
    assert.deepEqual(lines, []);
    await assert.rejects(hub.heartbeat(heartbeat), HubUnavailableError);
    assert.deepEqual(calls, [hubA, hubB, hubA, hubB]);
  });

  it('does not try another hub once the caller stops', async () => {
    const stop = new AbortController();
    const { hub, calls } = twoHubs(() => {
      stop.abort();
      return refused();
    });
    await assert.rejects(hub.heartbeat(heartbeat, stop.signal));
    assert.deepEqual(calls, [hubA]);
  });
});

describe('failover with calls under way', () => {
  it('a long poll that began on the old hub and ends well there does not take the client back to it', async () => {
    const hubA = 'https://hub-a.example.org';
    const hubB = 'https://hub-b.example.org';
    const calls: string[] = [];
    const lines: string[] = [];
    let answerPoll!: () => void;
    const fakeFetch = (async (input: string | URL | Request) => {
      const url = new URL(String(input));
      calls.push(`${url.origin}${url.pathname}`);
      if (url.pathname.endsWith('/operations')) {
        await new Promise<void>((resolve) => (answerPoll = resolve));
        return json(200, { operations: [] });
      }
      if (url.origin === hubA) throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } });
      return json(200, { serverTime: '2031-01-01T00:00:00.000Z' });
    }) as typeof fetch;
    const hub = new HubClient({ hubUrl: `${hubA},${hubB}`, hostId: 'host-a', token, fetch: fakeFetch, log: (line) => lines.push(line) });
    const poll = hub.operations(25_000);
    await hub.heartbeat(heartbeat); // A fails it: the client moves to B
    answerPoll();
    await poll;
    await hub.heartbeat(heartbeat);
    assert.deepEqual(calls, [
      `${hubA}/spoke/v1/operations`,
      `${hubA}/spoke/v1/heartbeat`,
      `${hubB}/spoke/v1/heartbeat`,
      `${hubB}/spoke/v1/heartbeat`,
    ]);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.equal(hub.hubUrl, `${hubB}/`);
  });
});
