// The projection: each event becomes row operations on accounts, payments and vms. Pure: a value taken
// from a row already projected (the account's email) is a `lookup`, resolved where the rows live —
// in memory for rebuild and as-of, in SQL by capsul_apply_projection with each append.
import { formatCents } from '../domain/shared/money.ts';
import type { LedgerEvent } from '../domain/events.ts';
import { lookup, type RowOp } from './tables.ts';

export function project(event: LedgerEvent): RowOp[] {
  switch (event.type) {
    case 'AccountOpened':
      return [{ kind: 'insert', table: 'accounts', row: { id: event.data.accountId, email: event.data.email, created: event.data.at } }];
    case 'PaymentRecorded': {
      const d = event.data;
      return [{
        kind: 'insert',
        table: 'payments',
        row: {
          id: d.paymentId, created: d.at, email: accountEmail(d.accountId), dollars: formatCents(d.amountCents),
          invalidated: false, account_id: d.accountId, provider: d.provider, reference: d.reference, recorded: d.recordedAt,
          invalidated_at: null, invalidation_reason: null,
        },
      }];
    }
    case 'PaymentInvalidated':
      return [{
        kind: 'update', table: 'payments', key: { id: event.data.paymentId },
        set: { invalidated: true, invalidated_at: event.data.at, invalidation_reason: event.data.reason },
      }];
    case 'PaymentReinstated':
      return [{
        kind: 'update', table: 'payments', key: { id: event.data.paymentId },
        set: { invalidated: false, invalidated_at: null, invalidation_reason: null },
      }];
    case 'VmCreationRequested': {
      const d = event.data;
      return [{
        kind: 'insert',
        table: 'vms',
        row: {
          id: d.vmId, email: accountEmail(d.accountId), os: d.os, size: d.size, created: d.at, deleted: null,
          last_seen_ipv4: null, last_seen_ipv6: null, host: null, state: 'pending', account_id: d.accountId,
          dollars_per_month: formatCents(d.priceCentsPerMonth), ssh_public_keys: d.sshPublicKeys,
          ssh_host_key_fingerprints: null, state_observed: null, deletion_reason: null, failure: null,
        },
      }];
    }
    case 'VmDeletionRequested':
      return [vmUpdate(event.data.vmId, { deleted: event.data.at, deletion_reason: event.data.reason })];
    case 'VmPlaced':
      return [vmUpdate(event.data.vmId, { host: event.data.host, state: 'creating' })];
    case 'VmProvisioned':
      return [vmUpdate(event.data.vmId, {
        last_seen_ipv4: event.data.ipv4, last_seen_ipv6: event.data.ipv6, ssh_host_key_fingerprints: event.data.sshHostKeys,
      })];
    case 'VmStateObserved':
      return [vmUpdate(event.data.vmId, { state: event.data.state, state_observed: event.data.at })];
    case 'VmDeleted':
      return [vmUpdate(event.data.vmId, { state: 'deleted', state_observed: event.data.at })];
    case 'VmFailed':
      return [vmUpdate(event.data.vmId, { state: 'failed', failure: event.data.error, state_observed: event.data.at })];
    case 'VmStartRequested':
    case 'VmStopRequested':
      return [];
    default: {
      const unknown: never = event;
      throw new Error(`no projection for event ${(unknown as { type: string }).type}`);
    }
  }
}

const vmUpdate = (vmId: string, set: Record<string, unknown>): RowOp => ({ kind: 'update', table: 'vms', key: { id: vmId }, set });

const accountEmail = (accountId: string) => lookup('accounts', accountId, 'email');
