// The hub ↔ spoke wire protocol, shared by both sides (the spoke imports nothing else of the hub's).
// The spoke only dials out: heartbeats, a long-poll for its operations, and reports of what it saw.
// Authentication: `Authorization: Bearer <token>` and `X-Capsul-Host: <host id>` on every request.

export const protocolPrefix = '/spoke/v1';

export type ObservedState = 'running' | 'stopped' | 'crashed' | 'paused';
export const observedStates: readonly ObservedState[] = ['running', 'stopped', 'crashed', 'paused'];

export type OperationKind = 'create' | 'start' | 'stop' | 'force-stop' | 'delete';

/** What a capsul needs from its host to be created. */
export type CapsulSpec = {
  memoryMb: number;
  vcpus: number;
  /** the OS image's template file name, relative to the host's image directory */
  imageFile: string;
  sshPublicKeys: string[];
};

/** An operation the hub assigns to a host. Delivered until the host reports its outcome. */
export type Operation = {
  /** unique; the spoke runs each id at most once */
  id: string;
  kind: OperationKind;
  vmId: string;
  /** when the hub decided it (ISO 8601) */
  createdAt: string;
  /** only for `create` */
  spec?: CapsulSpec;
};

export type HostKeyFingerprint = { type: string; sha256: string };

type ReportBase = {
  /** unique per report (a UUID): the same report sent again changes nothing */
  id: string;
  vmId: string;
  /** the operation this report completes, if any */
  operationId: string | null;
  /** when the spoke observed it (ISO 8601) */
  observedAt: string;
};

export type Report =
  | (ReportBase & { type: 'provisioned'; ipv4: string | null; ipv6: string | null; sshHostKeys: HostKeyFingerprint[] })
  | (ReportBase & { type: 'state'; state: ObservedState })
  | (ReportBase & { type: 'failed'; error: string })
  | (ReportBase & { type: 'deleted' });

export type ReportStatus = 'accepted' | 'duplicate' | 'stale' | 'refused';
export type ReportResult = { id: string; status: ReportStatus; error?: string };

/** POST /spoke/v1/heartbeat */
export type Heartbeat = {
  capacity: { memoryMb: number; vcpus: number };
  /** every capsul the host sees, whatever the hub thinks */
  vms: { vmId: string; state: ObservedState }[];
  agentVersion: string;
};
export type HeartbeatResponse = { serverTime: string };

/** GET /spoke/v1/operations?waitMs=<0..30000> */
export type OperationsResponse = { operations: Operation[] };

/** POST /spoke/v1/reports */
export type ReportsRequest = { reports: Report[] };
export type ReportsResponse = { results: ReportResult[] };

export const limits = {
  maxReportsPerRequest: 100,
  maxLongPollMs: 30_000,
  maxVmsPerHeartbeat: 10_000,
  /** in UTF-16 code units, as JavaScript counts a string's length */
  maxErrorLength: 2_000,
  maxHostKeysPerReport: 16,
  /** a request body as sent, in bytes: more gets 413 */
  maxRequestBytes: 1024 * 1024,
  /**
   * How far a report's observedAt may lie ahead of the hub's clock, or before its capsul was
   * requested (on the hub's clock): hosts' clocks drift a little; beyond that a report is refused.
   */
  maxClockSkewMs: 5 * 60_000,
} as const;
