// The projection: each event becomes row operations on accounts, payments and vms. Pure: a value taken
// from a row already projected (the account's email) is a `lookup`, resolved where the rows live —
// in memory for rebuild and as-of, in SQL by capsul_apply_projection with each append.
import { formatCents } from '../domain/shared/money.ts';
import { describeActor, type LedgerEvent } from '../domain/events.ts';
import type { EventMetadata } from '../db/event-store.ts';
import { lookup, type RowOp } from './tables.ts';

/**
 * `metadata`: the event's cause (who, why), which a few rows show (a correction's and a deletion's
 * reason, a held payment's, who closed it).
 */
export function project(event: LedgerEvent, metadata: EventMetadata): RowOp[] {
  switch (event.type) {
    case 'AccountOpened':
      return [
        {
          kind: 'insert',
          table: 'accounts',
          row: { id: event.data.accountId, email: event.data.email, created: event.data.at, suspended: null, delete_after: null },
        },
      ];
    case 'PaymentRecorded': {
      const d = event.data;
      return [
        {
          kind: 'insert',
          table: 'payments',
          row: {
            id: d.paymentId,
            created: d.at,
            email: accountEmail(d.accountId),
            dollars: formatCents(d.amountCents),
            invalidated: false,
            account_id: d.accountId,
            provider: d.provider,
            reference: d.reference,
            recorded: d.recordedAt,
            invalidated_at: null,
            invalidation_reason: null,
            refunded_dollars: '0.00',
            refunded_at: null,
          },
        },
      ];
    }
    case 'PaymentInvalidated':
      return [
        {
          kind: 'update',
          table: 'payments',
          key: { id: event.data.paymentId },
          set: { invalidated: true, invalidated_at: event.data.at, invalidation_reason: metadata.reason ?? null },
        },
      ];
    case 'PaymentReinstated':
      return [
        {
          kind: 'update',
          table: 'payments',
          key: { id: event.data.paymentId },
          set: { invalidated: false, invalidated_at: null, invalidation_reason: null },
        },
      ];
    case 'PaymentRefunded':
      return [
        {
          kind: 'update',
          table: 'payments',
          key: { id: event.data.paymentId },
          set: { refunded_dollars: formatCents(event.data.totalRefundedCents), refunded_at: event.data.at },
        },
      ];
    case 'BalanceWarningIssued':
      return []; // read from the account's stream (history, the warning job), not from a table
    case 'StatementEmailsChosen':
      return []; // read from the account's stream (the balance page, the statement-emails job)
    case 'VmCreationRequested': {
      const d = event.data;
      return [
        {
          kind: 'insert',
          table: 'vms',
          row: {
            id: d.vmId,
            email: accountEmail(d.accountId),
            os: d.os,
            size: d.size,
            created: d.at,
            deleted: null,
            last_seen_ipv4: null,
            last_seen_ipv6: null,
            host: null,
            state: 'pending',
            account_id: d.accountId,
            dollars_per_month: formatCents(d.priceCentsPerMonth),
            ssh_public_keys: d.sshPublicKeys,
            ssh_host_key_fingerprints: null,
            state_observed: null,
            deletion_reason: null,
            failure: null,
            vanished: null,
            accrual_ended: null,
            suspended: null,
            start_on_resume: false,
          },
        },
      ];
    }
    case 'VmDeletionRequested':
      return [vmUpdate(event.data.vmId, { deleted: event.data.at, deletion_reason: metadata.reason ?? null })];
    case 'VmAccrualEnded':
      return [vmUpdate(event.data.vmId, { accrual_ended: event.data.at })];
    case 'VmPlaced': {
      const d = event.data;
      return [vmUpdate(d.vmId, { host: d.host, state: 'creating' }), operation(d.operationId, d.vmId, d.host, 'create', d.at)];
    }
    case 'VmStartRequested':
      // A start asked (after a resumption, or by hand) is the one a resumption was waiting for.
      return [
        operation(event.data.operationId, event.data.vmId, event.data.host, 'start', event.data.at),
        vmUpdate(event.data.vmId, { start_on_resume: false }),
      ];
    case 'VmStopRequested': {
      const d = event.data;
      return [operation(d.operationId, d.vmId, d.host, d.force ? 'force-stop' : 'stop', d.at)];
    }
    case 'VmDeletionScheduled':
      return [operation(event.data.operationId, event.data.vmId, event.data.host, 'delete', event.data.at)];
    case 'VmProvisioned': {
      const d = event.data;
      return [
        vmUpdate(d.vmId, { last_seen_ipv4: d.ipv4, last_seen_ipv6: d.ipv6, ssh_host_key_fingerprints: d.sshHostKeys }),
        ...completes(d.operationId, d.at, 'provisioned'),
      ];
    }
    case 'VmStateObserved':
      return [
        vmUpdate(event.data.vmId, { state: event.data.state, state_observed: event.data.at }),
        ...completes(event.data.operationId, event.data.at, event.data.state),
      ];
    case 'VmDeleted': {
      const d = event.data;
      return [
        vmUpdate(d.vmId, { state: 'deleted', state_observed: d.at }),
        ...completes(d.operationId, d.at, 'deleted'),
        // A vanished capsul's incident ends once its host confirms a deletion asked of it since (a no-op otherwise).
        ...(d.host === null ? [] : [driftUpdate(vanishedDriftId(d.host, d.vmId), { resolved: d.at })]),
      ];
    }
    case 'VmVanished': {
      const d = event.data;
      return [
        vmUpdate(d.vmId, { state: 'vanished', state_observed: d.at, vanished: d.at }),
        ...d.cancelledOperationIds.flatMap((id) => completes(id, d.reportedAt, 'cancelled')),
        {
          kind: 'insert',
          table: 'drift',
          row: {
            id: vanishedDriftId(d.host, d.vmId),
            host: d.host,
            vm_id: d.vmId,
            kind: 'vanished-from-host',
            detected: d.at,
            resolved: null,
          },
        },
      ];
    }
    case 'VmFailed': {
      const d = event.data;
      // As the decider: only a failed create (or a failure outside any operation) fails the capsul.
      const failed = d.operation === null || d.operation === 'create' ? { state: 'failed', state_observed: d.at } : {};
      return [vmUpdate(d.vmId, { ...failed, failure: d.error }), ...completes(d.operationId, d.at, 'failed')];
    }
    case 'HostRegistered': {
      const d = event.data;
      return [
        {
          kind: 'insert',
          table: 'hosts',
          row: { id: d.hostId, memory_mb: d.memoryMb, vcpus: d.vcpus, token_hash: d.tokenHash, registered: d.at, removed: null },
        },
      ];
    }
    case 'HostTokenRotated':
      return [{ kind: 'update', table: 'hosts', key: { id: event.data.hostId }, set: { token_hash: event.data.tokenHash } }];
    case 'DriftDetected': {
      const d = event.data;
      return [
        {
          kind: 'insert',
          table: 'drift',
          row: { id: driftId(d.hostId, d.kind, d.vmId, d.at), host: d.hostId, vm_id: d.vmId, kind: d.kind, detected: d.at, resolved: null },
        },
      ];
    }
    case 'DriftResolved': {
      const d = event.data;
      return [driftUpdate(driftId(d.hostId, d.kind, d.vmId, d.detectedAt), { resolved: d.at })];
    }
    case 'HostRemoved':
      return [{ kind: 'update', table: 'hosts', key: { id: event.data.hostId }, set: { token_hash: null, removed: event.data.at } }];
    case 'PaymentHeld': {
      const d = event.data;
      return [
        {
          kind: 'insert',
          table: 'payment_holds',
          row: {
            provider: d.provider,
            reference: d.reference,
            email: d.email,
            amount_cents: d.amountCents,
            expected_cents: d.expectedCents,
            reason: metadata.reason ?? '',
            held: d.at,
            resolved: null,
            resolved_by: null,
            resolution: null,
            id: d.holdId,
          },
        },
      ];
    }
    case 'PaymentHoldResolved':
      return [
        {
          kind: 'update',
          table: 'payment_holds',
          key: { id: event.data.holdId },
          set: {
            resolved: event.data.at,
            resolved_by: metadata.by ? describeActor(metadata.by) : null,
            resolution: metadata.reason ?? null,
          },
        },
      ];
    case 'AccountSuspended': {
      const d = event.data;
      const account: RowOp = {
        kind: 'update',
        table: 'accounts',
        key: { id: d.accountId },
        set: { suspended: d.at, delete_after: d.deleteAfter },
      };
      return [account, ...d.vmIds.map((vmId) => vmUpdate(vmId, { suspended: d.at }))];
    }
    case 'AccountResumed': {
      const d = event.data;
      const account: RowOp = { kind: 'update', table: 'accounts', key: { id: d.accountId }, set: { suspended: null, delete_after: null } };
      return [account, ...d.vmIds.map((vmId) => vmUpdate(vmId, { suspended: null, start_on_resume: true }))];
    }
    default: {
      const unknown: never = event;
      throw new Error(`no projection for event ${(unknown as { type: string }).type}`);
    }
  }
}

const vmUpdate = (vmId: string, set: Record<string, unknown>): RowOp => ({ kind: 'update', table: 'vms', key: { id: vmId }, set });
const driftUpdate = (id: string, set: Record<string, unknown>): RowOp => ({ kind: 'update', table: 'drift', key: { id }, set });

const operation = (id: string, vmId: string, host: string, kind: string, at: string): RowOp => ({
  kind: 'insert',
  table: 'operations',
  row: { id, vm_id: vmId, host, kind, created: at, completed: null, outcome: null },
});

const driftId = (hostId: string, kind: string, vmId: string, detectedAt: string) => `${hostId}/${kind}/${vmId}/${detectedAt}`;
/** A capsul vanishes at most once: its incident needs no time in its id, so its deletion can close it. */
const vanishedDriftId = (hostId: string, vmId: string) => `${hostId}/vanished-from-host/${vmId}`;

/** A report that names its operation completes it. */
const completes = (operationId: string | null, at: string, outcome: string): RowOp[] =>
  operationId === null ? [] : [{ kind: 'update', table: 'operations', key: { id: operationId }, set: { completed: at, outcome } }];

const accountEmail = (accountId: string) => lookup('accounts', accountId, 'email');
