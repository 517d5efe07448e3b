// Property-based fuzzing of the hub over HTTP (test/fuzz/): hostile text and request parts as fast-check
// arbitraries, how many runs and which seed (CAPSUL_FUZZ_RUNS, CAPSUL_FUZZ_SEED), what no response may
// ever hold, and the watch that a refused request wrote nothing. Generic: the route models live in test/fuzz/.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { databaseFingerprint } from './fingerprint.ts';

/** One seed for the whole file (CAPSUL_FUZZ_SEED, or a random one): each property's own is derived from it and its name. */
const baseSeed = process.env.CAPSUL_FUZZ_SEED === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.CAPSUL_FUZZ_SEED);

/**
 * fast-check's parameters for the property `name`: a few runs by default (npm test stays quick), more on
 * demand. The properties of a file share its database, so a failure is reproduced by running the whole
 * file again with the file's seed, which the failure prints.
 */
export function fuzzParameters(name: string, defaultRuns: number): fc.Parameters<unknown> {
  const runs = Number(process.env.CAPSUL_FUZZ_RUNS ?? defaultRuns);
  assert.ok(Number.isInteger(runs) && runs > 0, `CAPSUL_FUZZ_RUNS=${process.env.CAPSUL_FUZZ_RUNS}: not a positive integer`);
  assert.ok(Number.isInteger(baseSeed), `CAPSUL_FUZZ_SEED=${process.env.CAPSUL_FUZZ_SEED}: not an integer`);
  const seed = [...name].reduce((hash, character) => (Math.imul(hash, 31) + character.charCodeAt(0)) | 0, baseSeed);
  return {
    numRuns: runs,
    seed,
    reporter: (details) => {
      if (!details.failed) return;
      const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
      throw new Error(
        `${error}\n${fc.defaultReportMessage(details)}\nreproduce (the whole file): CAPSUL_FUZZ_SEED=${baseSeed} CAPSUL_FUZZ_RUNS=${runs}`,
      );
    },
  };
}

// ---- Hostile text ---------------------------------------------------------------------------------

/** Characters that have broken web apps: NUL, C0 and C1 controls, bidi overrides, zero-width and BOM, separators. */
const nasty = [
  '\u0000',
  '\u0001',
  '\u0007',
  '\t',
  '\n',
  '\r',
  '\u000b',
  '\u001b',
  '\u007f',
  '\u0085',
  '\u009b',
  '\u202e',
  '\u202d',
  '\u2066',
  '\u2069',
  '\u200b',
  '\u200d',
  '\u2060',
  '\ufeff',
  '\u2028',
  '\u2029',
  '\ufffd',
  '\uffff',
  '\ud800',
  '\udfff',
  '\ud83d',
  '\u{1f600}',
  'é',
  'İ',
  'ß',
  '<script>',
  '"',
  "'",
  '\\',
  '%',
  '&',
  '=',
  '+',
  ';',
  '/',
  '..',
  '?',
  '#',
  "' OR 1=1 --",
  '$1',
  '{{',
  '<%=',
  '${',
  '__proto__',
  'constructor',
];

/** Values that almost pass: numbers at and past limits, ids and addresses of the right shape. */
const almost = [
  '',
  ' ',
  '0',
  '-1',
  '1',
  '5',
  '20',
  '20.00',
  '1e309',
  'NaN',
  'Infinity',
  '0x10',
  '9'.repeat(40),
  '-0',
  '1.005',
  '10,5',
  'a@b.c',
  'alice@example.org',
  'ALICE@EXAMPLE.ORG',
  'x@localhost',
  'true',
  'null',
  '[]',
  '{}',
  'f1-xs',
  'f1-s',
  'alpine322',
  'debian12',
  'start',
  'stop',
  'delete',
  'force-stop',
  'cs_test_x',
  'inv_1',
];

/** Any text a sender could put in a field: hostile pieces, arbitrary code points (lone surrogates too), now and then huge. */
export const hostileText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .array(fc.oneof(fc.constantFrom(...nasty), fc.constantFrom(...almost), fc.string({ maxLength: 8 })), { maxLength: 6 })
      .map((parts) => parts.join('')),
  },
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)),
      minLength: 1,
      maxLength: 3,
    }),
  },
  { weight: 3, arbitrary: fc.constantFrom(...almost) },
  // Past the field limits (a few KB), and now and then past the hub's 64 KB body limit.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('a', '\u0000', '\u202e', '9', '%', 'é'), fc.oneof(fc.integer({ min: 200, max: 10_000 }), fc.constant(70_000)))
      .map(([c, n]) => c.repeat(n)),
  },
);

/** Text that is no attack at all: printable ASCII, what a form mostly carries. */
const plainText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 40 });

/** %-escapes that are no UTF-8 text, or no escape at all. */
const badEscapes = [
  '%C0%AF',
  '%FF',
  '%E0%80',
  '%E2%82',
  '%ED%A0%80',
  '%F4%90%80%80',
  '%zz',
  '%',
  '%4',
  '%00',
  '%0A',
  '%1B',
  '%E2%80%AE',
  '%EF%BB%BF',
];

/** Percent-encodes text as a browser would (a lone surrogate as the bytes Node makes of it). */
export function percentEncode(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return [...Buffer.from(text, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  }
}

/** Text as it travels in an address or a form body: encoded hostile text, raw malformed escapes, or a mix. */
export const encodedText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: hostileText.map(percentEncode) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.oneof(fc.constantFrom(...badEscapes), hostileText.map(percentEncode)), { minLength: 1, maxLength: 4 })
      .map((parts) => parts.join('')),
  },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '1', '-', '_', '.', '~', '!', '*', '(', ')', '+'), maxLength: 20 }) },
);

/** A JSON value of any type where a string is expected: strings, numbers, booleans, null, arrays, objects. */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileText },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(2 ** 53, -(2 ** 63), 1e308)) },
  { weight: 1, arbitrary: fc.constantFrom(true, false, null) },
  { weight: 1, arbitrary: fc.array(hostileText, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(hostileText, hostileText, { maxKeys: 3 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/**
 * A form body (urlencoded) from `names` and hostile names: now a plausible form (its own fields, with
 * values that almost pass), now fields missing, repeated, empty, unknown, or with hostile values.
 */
export function formBody(names: readonly string[], values: Record<string, fc.Arbitrary<string>> = {}): fc.Arbitrary<string> {
  const valueFor = (name: string) => (Object.hasOwn(values, name) ? values[name]! : plainText);
  const plausible = fc
    .subarray([...names])
    .chain((chosen) =>
      fc.tuple(
        ...chosen.map((name) =>
          fc
            .oneof({ weight: 3, arbitrary: valueFor(name) }, { weight: 1, arbitrary: plainText })
            .map((value) => `${percentEncode(name)}=${percentEncode(value)}`),
        ),
      ),
    )
    .map((pairs) => pairs.join('&'));
  const name = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...names, ...(names.length ? [] : ['x'])).map(percentEncode) },
    { weight: 1, arbitrary: encodedText },
  );
  const pair = name.chain((field) => {
    const decoded = decodeURIComponentSafe(field);
    const known = Object.hasOwn(values, decoded) ? values[decoded] : undefined;
    const value = known ? fc.oneof({ weight: 2, arbitrary: known.map(percentEncode) }, { weight: 3, arbitrary: encodedText }) : encodedText;
    return fc.oneof({ weight: 8, arbitrary: value.map((v) => `${field}=${v}`) }, { weight: 1, arbitrary: fc.constant(field) });
  });
  const hostile = fc.array(pair, { maxLength: 6 }).map((pairs) => pairs.join('&'));
  return fc.oneof({ weight: 2, arbitrary: plausible }, { weight: 3, arbitrary: hostile });
}

/** A JSON object body from `names` and hostile names, each member of any type. */
export function jsonBody(
  names: readonly string[],
  values: Record<string, fc.Arbitrary<unknown>> = {},
): fc.Arbitrary<Record<string, unknown>> {
  const member = fc.oneof(
    ...names.map((field) => fc.tuple(fc.constant(field), Object.hasOwn(values, field) ? fc.oneof(values[field]!, anyJson) : anyJson)),
    fc.tuple(hostileText, anyJson),
  );
  return fc.array(member, { maxLength: 6 }).map((members) => Object.fromEntries(members));
}

/** A query string (without `?`) from `names` and hostile names. */
export const queryString = (names: readonly string[], values: Record<string, fc.Arbitrary<string>> = {}) => formBody(names, values);

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A body as a script could send it: form, JSON, JSON that is not JSON, bytes, under a right, wrong or missing content type. */
export type FuzzBody = { payload: string | Buffer; contentType: string | null };

export function anyBody(form: fc.Arbitrary<string>, json: fc.Arbitrary<unknown>): fc.Arbitrary<FuzzBody> {
  const contentType = fc.constantFrom(
    'application/x-www-form-urlencoded',
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'multipart/form-data; boundary=x',
    'application/octet-stream',
    'application/x-www-form-urlencoded; charset=latin1',
    'text/html',
    'application/xml',
    ';;;',
    null,
  );
  return fc.oneof(
    { weight: 5, arbitrary: form.map((payload) => ({ payload, contentType: 'application/x-www-form-urlencoded' })) },
    { weight: 3, arbitrary: json.map((value) => ({ payload: JSON.stringify(value) ?? 'undefined', contentType: 'application/json' })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.oneof(
            form,
            json.map((value) => JSON.stringify(value) ?? ''),
          ),
          contentType,
        )
        .map(([payload, type]) => ({ payload, contentType: type })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.uint8Array({ maxLength: 64 }), contentType)
        .map(([bytes, type]) => ({ payload: Buffer.from(bytes), contentType: type })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom('{', '{"a":', '[1,', '"\\ud800"', '{"__proto__":{"x":1}}', '{"a":1,"a":2}', 'nul\u0000l', '\ufeff{}'),
          contentType,
        )
        .map(([payload, type]) => ({ payload, contentType: type })),
    },
  );
}

// ---- What no response may hold ------------------------------------------------------------------

/** Traces of the inside: a stack frame, an error's name, a module path, Node's error codes, PostgreSQL's messages. */
const leaks: [RegExp, string][] = [
  [/^\s+at \S/m, 'a stack frame'],
  [/\b(Type|Range|Reference|Syntax|URI)?Error: /, 'an error message'],
  [/node_modules|\/src\/|\.ts:\d+/, 'a source path'],
  [/\bERR_[A-Z_]+|FST_[A-Z_]+/, 'an internal error code'],
  [
    /invalid input syntax|violates|syntax error|relation "|column "|duplicate key|out of range for type|invalid byte sequence|unterminated|null value in column/i,
    'a PostgreSQL message',
  ],
  [/"statusCode"\s*:\s*5\d\d/, "fastify's raw 5xx error"],
  [/something went wrong/i, 'the 500 page'],
];

/** Properties 1 and 2: never a 5xx, never a trace of the inside in the body. */
export function assertSafeResponse(response: LightMyRequestResponse, about: string): void {
  assert.ok(response.statusCode < 500, `${about}: HTTP ${response.statusCode} ${response.body.slice(0, 500)}`);
  for (const [pattern, what] of leaks) {
    const found = pattern.exec(response.body);
    assert.equal(
      found,
      null,
      `${about}: HTTP ${response.statusCode}, ${what} in the body: …${found ? response.body.slice(Math.max(0, found.index - 100), found.index + 200) : ''}…`,
    );
  }
}

// ---- A refusal writes nothing ---------------------------------------------------------------------

/**
 * Property 3: a refused request (4xx) changes no row. The database's fingerprint is taken once and kept
 * while only refusals follow (each compared with it), and again only after a request that was not refused:
 * one fingerprint per request, not two. `allowed`: tables a refusal may change, each with why.
 */
export class RefusalWatch {
  private known: Record<string, string> | null = null;
  fingerprints = 0;
  fingerprintMs = 0;

  constructor(
    private readonly admin: pg.Pool,
    private readonly allowed: Record<string, string> = {},
  ) {}

  /** Before a request: the database as it is now. */
  async before(): Promise<void> {
    this.known ??= await this.take();
  }

  /** The test itself wrote (a given for the next request): the database must be read again. */
  forget(): void {
    this.known = null;
  }

  /** After it: a 4xx must have left every row as it was. */
  async after(response: LightMyRequestResponse, about: string): Promise<void> {
    if (response.statusCode < 400 || response.statusCode >= 500) {
      this.known = null;
      return;
    }
    const now = await this.take();
    const changed = Object.keys({ ...now, ...this.known }).filter((key) => now[key] !== this.known![key]);
    const pick = (shot: Record<string, string>) => Object.fromEntries(changed.map((key) => [key, shot[key]]));
    assert.deepEqual(
      pick(now),
      pick(this.known!),
      `${about}: refused with ${response.statusCode}, yet the database changed: ${changed.join(', ')} (${response.body.slice(0, 200)})`,
    );
  }

  private async take(): Promise<Record<string, string>> {
    const started = performance.now();
    const shot = await databaseFingerprint(this.admin);
    for (const table of Object.keys(this.allowed)) delete shot[`rows ${table}`];
    this.fingerprints++;
    this.fingerprintMs += performance.now() - started;
    return shot;
  }
}

// ---- Every route ----------------------------------------------------------------------------------

/** Every route of a fastify instance as `METHOD /path`, read from its route tree (checked with hasRoute). */
export function routesOf(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const at = line.search(/[├└]── /);
    if (at < 0) continue;
    const depth = at / 4;
    const [, segment, methods] = /^(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line.slice(at + 4))!;
    stack.length = depth;
    stack.push(segment!);
    for (const method of methods ? methods.split(', ') : []) routes.push(`${method} ${stack.join('')}`);
  }
  for (const route of routes) {
    const [method, url] = route.split(' ') as [string, string];
    assert.ok(app.hasRoute({ method: method as 'GET', url }), `routesOf read ${route} from the route tree, which fastify does not know`);
  }
  return routes;
}
