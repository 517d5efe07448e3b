// A hub in memory for spoke tests: the three endpoints of protocol.ts on 127.0.0.1, delivering each
// operation until a report completes it (as the real hub does), and able to go down, come back,
// deliver twice, leave reports unanswered, refuse a report or a whole batch, or refuse the token.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { protocolPrefix, type Heartbeat, type Operation, type Report, type ReportResult } from '../../src/spoke/protocol.ts';

export class FakeHub {
  readonly heartbeats: Heartbeat[] = [];
  /** every report received, repeats included, in order */
  readonly received: Report[] = [];
  /** the size of every POST /reports answered (refused batches included), in order */
  readonly reportBatches: number[] = [];
  /** operations not completed yet, in the order they were added */
  readonly pending: Operation[] = [];
  readonly completed = new Map<string, Report>();
  readonly deliveries = new Map<string, number>();
  /** every Authorization and X-Capsul-Host header seen */
  readonly seenAuth: { authorization: string | undefined; host: string | undefined }[] = [];
  refuseToken = false;
  /** answer /reports with 503 (the hub is up for polls and heartbeats only) */
  reportsDown = false;
  /** answer /reports with this status instead (a proxy's 404, …) */
  reportsStatus: number | null = null;
  /** answer /reports with an empty results list */
  leaveReportsUnanswered = false;
  /** list each operation twice in every poll answer */
  duplicateDeliveries = false;
  /** capsuls whose reports get status "refused" */
  readonly refusedVms = new Set<string>();
  /** a batch holding a report about one of these capsuls is refused whole with 400, as the hub refuses a malformed body */
  readonly poisonVms = new Set<string>();
  private server: Server | null = null;
  private port = 0;
  private readonly seenReportIds = new Set<string>();
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly hostId = 'host-a',
    readonly token = 'test-token-aaaaaaaaaaaaaaaaaaaa',
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    if (this.server) return;
    const server = createServer((request, response) => void this.handle(request, response));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and drops every open connection, long polls included. */
  async down(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  addOperation(operation: Operation): void {
    this.pending.push(operation);
    for (const wake of this.waiters) wake();
  }

  reportsFor(operationId: string): Report[] {
    return this.received.filter((report) => report.operationId === operationId);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    const authorization = request.headers.authorization;
    const host = request.headers['x-capsul-host'] as string | undefined;
    this.seenAuth.push({ authorization, host });
    const body = await readJson(request);
    if (this.refuseToken || authorization !== `Bearer ${this.token}` || host !== this.hostId) {
      return send(response, 401, { error: 'unknown host or wrong token' });
    }
    if (request.method === 'POST' && url.pathname === `${protocolPrefix}/heartbeat`) {
      this.heartbeats.push(body as Heartbeat);
      return send(response, 200, { serverTime: new Date().toISOString() });
    }
    if (request.method === 'GET' && url.pathname === `${protocolPrefix}/operations`) {
      const waitMs = Number(url.searchParams.get('waitMs') ?? 0);
      if (this.pending.length === 0) await this.waitForOperations(waitMs, request);
      const operations = this.pending.flatMap((operation) => (this.duplicateDeliveries ? [operation, operation] : [operation]));
      for (const operation of operations) this.deliveries.set(operation.id, (this.deliveries.get(operation.id) ?? 0) + 1);
      return send(response, 200, { operations });
    }
    if (request.method === 'POST' && url.pathname === `${protocolPrefix}/reports`) {
      if (this.reportsDown) return send(response, 503, { error: 'down for maintenance' });
      if (this.reportsStatus !== null) return send(response, this.reportsStatus, { error: `HTTP ${this.reportsStatus} from the fake hub` });
      const { reports } = body as { reports: Report[] };
      this.reportBatches.push(reports.length);
      if (reports.some((report) => this.poisonVms.has(report.vmId)))
        return send(response, 400, { error: 'malformed reports: reports[0].id contains U+0000 (a control character) at position 3' });
      this.received.push(...reports);
      if (this.leaveReportsUnanswered) return send(response, 200, { results: [] });
      return send(response, 200, { results: reports.map((report) => this.record(report)) });
    }
    return send(response, 404, { error: 'not found' });
  }

  private record(report: Report): ReportResult {
    if (this.refusedVms.has(report.vmId))
      return { id: report.id, status: 'refused', error: `capsul ${report.vmId} is not on host ${this.hostId}` };
    const index = this.pending.findIndex((operation) => operation.id === report.operationId);
    if (index >= 0) {
      this.completed.set(report.operationId!, report);
      this.pending.splice(index, 1);
    }
    if (this.seenReportIds.has(report.id)) return { id: report.id, status: 'duplicate' };
    this.seenReportIds.add(report.id);
    return { id: report.id, status: 'accepted' };
  }

  private waitForOperations(waitMs: number, request: IncomingMessage): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.waiters.add(done);
      request.socket.once('close', done);
    });
  }
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? undefined : JSON.parse(text);
}

function send(response: ServerResponse, status: number, body: unknown): void {
  if (response.destroyed) return;
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}
