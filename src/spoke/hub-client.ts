// The spoke's side of the wire: the three endpoints of protocol.ts over HTTPS, with the host's token,
// a timeout on every request, and every answer validated before the agent believes it. HUB_URL may
// list several hubs (on one database): the client talks to one at a time and fails over (see HubClient).
import {
  limits,
  protocolPrefix,
  type CapsulSpec,
  type Heartbeat,
  type HeartbeatResponse,
  type Operation,
  type OperationKind,
  type Report,
  type ReportResult,
  type ReportStatus,
} from './protocol.ts';

/** The hub answered 401 or 403: this host's token is wrong, rotated or revoked. Retrying will not help. */
export class TokenRefusedError extends Error {
  constructor(readonly status: number) {
    super(`the hub refused this host's token (HTTP ${status})`);
  }
}

/** HUB_URL is not one the spoke may talk to. */
export class HubUrlError extends Error {}

/** The hub could not be reached, timed out, or answered something the spoke cannot use (a 5xx, 404 …); worth retrying. */
export class HubUnavailableError extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

/** The hub found the request's body malformed (400, 413, 422): sending the same body again will not help. */
export class HubRejectedError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** An operation the hub sent that the spoke cannot run as it stands; it is reported as failed. */
export type MalformedOperation = { id: string; vmId: string; problem: string };

export type HubClientOptions = {
  /** one hub URL, or several separated by commas (parseHubUrls) */
  hubUrl: string;
  hostId: string;
  token: string;
  /** for heartbeats and reports; a long poll gets its wait on top */
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
  /** says when the client moves to another hub (never with the token) */
  log?: (line: string) => void;
};

const operationKinds: readonly OperationKind[] = ['create', 'start', 'stop', 'force-stop', 'delete'];
const reportStatuses: readonly ReportStatus[] = ['accepted', 'duplicate', 'stale', 'refused'];
/**
 * The answers that mean "this body is malformed": only these set reports aside. Any other status (a 404
 * from a proxy, a 5xx, 408, 429) says nothing about the reports, so they wait in the outbox and are sent again.
 */
const bodyRefusedStatuses = new Set([400, 413, 422]);
const maxResponseBytes = 4 * 1024 * 1024;
const maxIdLength = 200;

/**
 * Talks to one hub at a time. A call that finds its hub unavailable (HubUnavailableError: no connection,
 * a timeout, a 5xx, an answer it cannot use) is tried at once on the next hub of the list, each hub at
 * most once per call, and the first that answers is kept: the client sticks with the hub that works and
 * goes back to an earlier one only when the ones after it fail in turn. A refused token or body is an
 * answer, the same on every hub (they share one database): it is never tried elsewhere. Sending a
 * request again elsewhere is safe: reports are deduplicated by id, operations re-delivered until reported.
 */
export class HubClient {
  private readonly bases: URL[];
  private readonly requestTimeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly log: (line: string) => void;
  /** the hub the next call goes to first */
  private current = 0;
  /** the hub that answered last, to say in the log when that changes */
  private answering = 0;

  constructor(private readonly options: HubClientOptions) {
    this.bases = parseHubUrls(options.hubUrl);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.fetch = options.fetch ?? globalThis.fetch;
    this.log = options.log ?? (() => {});
  }

  /** The hub this client sends its next request to, for the log (never with the token). */
  get hubUrl(): string {
    return this.bases[this.current]!.href;
  }

  /** Every hub it may talk to, in the order it tries them. */
  get hubUrls(): string[] {
    return this.bases.map((base) => base.href);
  }

  async heartbeat(heartbeat: Heartbeat, signal?: AbortSignal): Promise<HeartbeatResponse> {
    return this.failover(signal, async (base) => {
      const body = await this.request(base, 'POST', 'heartbeat', heartbeat, this.requestTimeoutMs, signal);
      if (!isObject(body) || typeof body.serverTime !== 'string' || Number.isNaN(Date.parse(body.serverTime))) {
        throw new HubUnavailableError('the hub answered the heartbeat without a valid serverTime');
      }
      return { serverTime: body.serverTime };
    });
  }

  /** Long-polls for this host's operations; ones the spoke cannot run come back apart, to be reported. */
  async operations(waitMs: number, signal?: AbortSignal): Promise<{ operations: Operation[]; malformed: MalformedOperation[] }> {
    const boundedWaitMs = Math.max(0, Math.min(limits.maxLongPollMs, Math.round(waitMs)));
    const body = await this.failover(signal, async (base) => {
      const answer = await this.request(
        base,
        'GET',
        `operations?waitMs=${boundedWaitMs}`,
        undefined,
        boundedWaitMs + this.requestTimeoutMs,
        signal,
      );
      if (!isObject(answer) || !Array.isArray(answer.operations)) {
        throw new HubUnavailableError('the hub answered the operations poll without an operations list');
      }
      return answer as { operations: unknown[] };
    });
    const operations: Operation[] = [];
    const malformed: MalformedOperation[] = [];
    for (const item of body.operations) {
      const checked = checkOperation(item);
      if ('problem' in checked) {
        if (checked.id !== null && checked.vmId !== null) malformed.push({ id: checked.id, vmId: checked.vmId, problem: checked.problem });
        else throw new HubUnavailableError(`the hub sent an operation without a usable id and capsul id: ${checked.problem}`);
      } else {
        operations.push(checked);
      }
    }
    return { operations, malformed };
  }

  async postReports(reports: Report[], signal?: AbortSignal): Promise<ReportResult[]> {
    if (reports.length === 0) return [];
    if (reports.length > limits.maxReportsPerRequest) throw new Error(`at most ${limits.maxReportsPerRequest} reports per request`);
    return this.failover(signal, async (base) => {
      const body = await this.request(base, 'POST', 'reports', { reports }, this.requestTimeoutMs, signal);
      if (!isObject(body) || !Array.isArray(body.results)) {
        throw new HubUnavailableError('the hub answered the reports without a results list');
      }
      return body.results.map((result) => {
        if (!isObject(result) || typeof result.id !== 'string' || !reportStatuses.includes(result.status as ReportStatus)) {
          throw new HubUnavailableError('the hub answered the reports with a malformed result');
        }
        const error = typeof result.error === 'string' ? result.error.slice(0, limits.maxErrorLength) : undefined;
        return { id: result.id, status: result.status as ReportStatus, ...(error === undefined ? {} : { error }) };
      });
    });
  }

  /** Runs `call` on the current hub, then on each next one while they are unavailable; see the class's comment. */
  private async failover<T>(signal: AbortSignal | undefined, call: (base: URL) => Promise<T>): Promise<T> {
    const failures: string[] = [];
    const count = this.bases.length;
    const first = this.current;
    /** the current hub as this call last saw or set it: a call that began before a switch must not undo it */
    let seen = first;
    for (let tried = 0; tried < count; tried++) {
      const index = (first + tried) % count;
      try {
        const result = await call(this.bases[index]!);
        if (this.current === seen) this.answered(index, failures);
        return result;
      } catch (error) {
        if (!(error instanceof HubUnavailableError) || signal?.aborted || count === 1) throw error;
        failures.push(`${this.bases[index]!.origin}: ${error.message}`);
        // Another call may have moved on already; only the hub that just failed is left behind.
        if (this.current === index) this.current = (index + 1) % count;
        seen = this.current;
        if (tried === count - 1) throw new HubUnavailableError(`no hub answered (${failures.join('; ')})`, error.status);
      }
    }
    throw new Error('unreachable: a hub list is never empty');
  }

  private answered(index: number, failures: string[]): void {
    this.current = index;
    if (index === this.answering) return;
    this.answering = index;
    this.log(`switched to hub ${this.bases[index]!.href}${failures.length > 0 ? ` (${failures.join('; ')})` : ''}`);
  }

  private async request(
    base: URL,
    method: 'GET' | 'POST',
    endpoint: string,
    body: unknown,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const url = new URL(`${protocolPrefix.slice(1)}/${endpoint}`, base);
    const timeout = AbortSignal.timeout(timeoutMs);
    let response: Response;
    try {
      response = await this.fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.options.token}`,
          'x-capsul-host': this.options.hostId,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
        redirect: 'error', // a redirect could carry the token somewhere else
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      if (timeout.aborted) throw new HubUnavailableError(`${method} ${url.pathname}: no answer within ${timeoutMs} ms`);
      throw new HubUnavailableError(`${method} ${url.pathname}: ${describeFetchError(error)}`);
    }
    const text = await readBody(response, maxResponseBytes).catch((error: Error) => {
      throw new HubUnavailableError(`${method} ${url.pathname}: ${error.message}`, response.status);
    });
    if (response.status === 401 || response.status === 403) throw new TokenRefusedError(response.status);
    if (!response.ok) {
      const detail = `${method} ${url.pathname}: HTTP ${response.status}${describeErrorBody(text)}`;
      throw bodyRefusedStatuses.has(response.status)
        ? new HubRejectedError(detail, response.status)
        : new HubUnavailableError(detail, response.status);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HubUnavailableError(`${method} ${url.pathname}: the answer is not JSON`, response.status);
    }
  }
}

/** Checks HUB_URL's list: one URL or several separated by commas, each as parseHubUrl, none empty or twice. */
export function parseHubUrls(text: string): URL[] {
  const items = text.split(',').map((item) => item.trim());
  if (items.some((item) => item === ''))
    throw new HubUrlError(`HUB_URL must be one hub URL or several separated by commas, with none empty: "${text}"`);
  const urls = items.map(parseHubUrl);
  const seen = new Set<string>();
  for (const url of urls) {
    if (seen.has(url.href)) throw new HubUrlError(`HUB_URL lists ${url.href} twice`);
    seen.add(url.href);
  }
  return urls;
}

/** Checks one hub URL: https, or plain http only to this machine (127.0.0.0/8, ::1, localhost). */
export function parseHubUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new HubUrlError(`HUB_URL must be a URL like https://hub.example.org, not "${text}"`);
  }
  if (url.username || url.password) throw new HubUrlError('HUB_URL must not contain a user name or password');
  if (url.search || url.hash) throw new HubUrlError('HUB_URL must not have a query or fragment');
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    throw new HubUrlError(`HUB_URL must use https (plain http only to 127.0.0.0/8, ::1 or localhost), not ${url.origin}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HubUrlError(`HUB_URL must be an https URL, not ${url.protocol}`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

export function isLoopback(hostname: string): boolean {
  if (hostname === 'localhost' || hostname === '[::1]') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

type Checked = Operation | { id: string | null; vmId: string | null; problem: string };

function checkOperation(item: unknown): Checked {
  if (!isObject(item)) return { id: null, vmId: null, problem: 'not an object' };
  const id = isId(item.id) ? item.id : null;
  const vmId = isId(item.vmId) ? item.vmId : null;
  const fail = (problem: string) => ({ id, vmId, problem });
  if (id === null) return fail('no id');
  if (vmId === null) return fail('no capsul id');
  if (!operationKinds.includes(item.kind as OperationKind)) return fail(`unknown kind ${JSON.stringify(item.kind)}`);
  if (typeof item.createdAt !== 'string' || Number.isNaN(Date.parse(item.createdAt))) return fail('no valid createdAt');
  const kind = item.kind as OperationKind;
  if (kind !== 'create') return { id, vmId, kind, createdAt: item.createdAt };
  const spec = checkSpec(item.spec);
  if (typeof spec === 'string') return fail(spec);
  return { id, vmId, kind, createdAt: item.createdAt, spec };
}

function checkSpec(spec: unknown): CapsulSpec | string {
  if (!isObject(spec)) return 'a create without a spec';
  const { memoryMb, vcpus, imageFile, sshPublicKeys } = spec;
  if (!Number.isSafeInteger(memoryMb) || (memoryMb as number) <= 0) return 'spec.memoryMb must be a positive integer';
  if (!Number.isSafeInteger(vcpus) || (vcpus as number) <= 0) return 'spec.vcpus must be a positive integer';
  if (typeof imageFile !== 'string' || imageFile === '') return 'spec.imageFile must be a file name';
  if (!Array.isArray(sshPublicKeys) || !sshPublicKeys.every((key) => typeof key === 'string'))
    return 'spec.sshPublicKeys must be a list of strings';
  return { memoryMb: memoryMb as number, vcpus: vcpus as number, imageFile, sshPublicKeys: [...sshPublicKeys] as string[] };
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= maxIdLength;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readBody(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    total += chunk.byteLength;
    if (total > maxBytes) throw new Error(`the answer is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeErrorBody(text: string): string {
  try {
    const body = JSON.parse(text) as unknown;
    if (isObject(body) && typeof body.message === 'string') return ` (${body.message.slice(0, 300)})`;
    if (isObject(body) && typeof body.error === 'string') return ` (${body.error.slice(0, 300)})`;
  } catch {
    // not JSON: the status says enough
  }
  return '';
}

function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message ?? String(error);
}
