// Read model: what happened, as events. Which streams and fields tell an account's, a payment's or a
// capsul's story (the capsuls of an account come from the `vms` projection), and a page of an
// account's story, newest first, of one kind (money, capsuls or all), read through the history index
// (account_events), with hosts' routine reports of an unchanged state gathered into runs. The events
// themselves are read only through src/db/event-store.ts.
import { accountStream } from '../domain/account/events.ts';
import type { LedgerEvent } from '../domain/events.ts';
import { vmStream, type ObservedState } from '../domain/vm/events.ts';
import { readAccountEvents, type EventCursor, type EventSelector, type StoredEvent } from '../db/event-store.ts';
import { accountOfCapsul } from './capsuls.ts';
import { accountOfPayment } from './payments.ts';
import type { Queryable } from './rows.ts';

/**
 * An account's story: its own stream and every one of its capsuls' streams. What the history index
 * replaced for reading it (readAccountEvents); kept as the reference the tests and the bench compare it with.
 */
export async function accountSelectors(db: Queryable, accountId: string): Promise<EventSelector[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM vms WHERE account_id = $1', [accountId]);
  return [accountStream(accountId), ...rows.map((row) => vmStream(row.id))].map((stream) => ({ stream }));
}

/** A payment's story (its events on its account's stream), or null when there is no such payment. */
export async function paymentSelectors(db: Queryable, paymentId: number): Promise<EventSelector[] | null> {
  const accountId = await accountOfPayment(db, paymentId);
  return accountId === null ? null : [paymentSelector(accountId, paymentId)];
}

export const paymentSelector = (accountId: string, paymentId: number): EventSelector => ({
  stream: accountStream(accountId),
  field: 'paymentId',
  equals: String(paymentId),
});

/** A capsul's story: its events on its account's stream and its own stream; null when there is no such capsul. */
export async function capsulSelectors(db: Queryable, vmId: string): Promise<EventSelector[] | null> {
  const capsul = await accountOfCapsul(db, vmId);
  if (capsul === null) return null;
  return [{ stream: accountStream(capsul.accountId), field: 'vmId', equals: vmId }, { stream: vmStream(vmId) }];
}

/** Which of an account's events a history page shows. */
export const historyKinds = ['all', 'money', 'capsuls'] as const;
export type HistoryKind = (typeof historyKinds)[number];

/**
 * Each event type's kind: every type is named, so a new one cannot slip past the filters unclassified.
 * null: in "all" only (the account's opening), or never on an account's streams (hosts, holds).
 */
const kindOfType: Record<LedgerEvent['type'], Exclude<HistoryKind, 'all'> | null> = {
  AccountOpened: null,
  PaymentRecorded: 'money',
  PaymentInvalidated: 'money',
  PaymentReinstated: 'money',
  PaymentRefunded: 'money',
  BalanceWarningIssued: 'money',
  VmCreationRequested: 'capsuls',
  VmDeletionRequested: 'capsuls',
  VmAccrualEnded: 'capsuls',
  AccountSuspended: 'money',
  AccountResumed: 'money',
  StatementEmailsChosen: null,
  VmPlaced: 'capsuls',
  VmProvisioned: 'capsuls',
  VmStateObserved: 'capsuls',
  VmStartRequested: 'capsuls',
  VmStopRequested: 'capsuls',
  VmDeletionScheduled: 'capsuls',
  VmDeleted: 'capsuls',
  VmVanished: 'capsuls',
  VmFailed: 'capsuls',
  PaymentHeld: null,
  PaymentHoldResolved: null,
  HostRegistered: null,
  HostTokenRotated: null,
  HostRemoved: null,
  DriftDetected: null,
  DriftResolved: null,
};

/** The message types a kind shows; null: every type. */
export function typesOfKind(kind: HistoryKind): LedgerEvent['type'][] | null {
  if (kind === 'all') return null;
  return Object.entries(kindOfType).flatMap(([type, of]) => (of === kind ? [type as LedgerEvent['type']] : []));
}

export type HistoryPage = { events: StoredEvent[]; older: EventCursor | null };

/**
 * At most `size` events of the account's story of one kind before `before`, newest first (the reverse
 * of commit order), and where older ones start. Read through the history index, so a page costs the
 * same however large the log; the kind is filtered in SQL, so a page is full whenever older events of
 * that kind exist.
 */
export async function accountHistoryPage(
  db: Queryable,
  accountId: string,
  page: { before: EventCursor | null; size: number; kind: HistoryKind },
): Promise<HistoryPage> {
  const { before, size } = page;
  const types = typesOfKind(page.kind) ?? undefined;
  const events = await readAccountEvents(db, accountId, { direction: 'backward', limit: size + 1, cursor: before, types });
  const shown = events.slice(0, size);
  const last = shown.at(-1);
  return {
    events: shown,
    older: events.length > size && last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : null,
  };
}

/** A history line: one event, or a host's reports of one capsul that only confirmed the state it was in. */
export type HistoryItem =
  | { kind: 'event'; event: StoredEvent }
  | { kind: 'reports'; vmId: string; state: ObservedState; count: number; newest: StoredEvent; oldest: StoredEvent };

/**
 * Gathers routine state reports (newest first in, newest first out): the `VmStateObserved` events of
 * one capsul in a row with the same state become one line. Only other capsuls' reports may come
 * between them; any other event ends every run, so a run never spans something else that happened,
 * and a state change always starts a run of its own. A run of one stays the event it is.
 */
export function groupRoutineReports(events: readonly StoredEvent[]): HistoryItem[] {
  const items: HistoryItem[] = [];
  const open = new Map<string, Extract<HistoryItem, { kind: 'reports' }>>();
  for (const stored of events) {
    const event = stored.event;
    if (event.type !== 'VmStateObserved') {
      open.clear();
      items.push({ kind: 'event', event: stored });
      continue;
    }
    const run = open.get(event.data.vmId);
    if (run && run.state === event.data.state) {
      run.count += 1;
      run.oldest = stored;
      continue;
    }
    const started = { kind: 'reports' as const, vmId: event.data.vmId, state: event.data.state, count: 1, newest: stored, oldest: stored };
    open.set(event.data.vmId, started);
    items.push(started);
  }
  return items.map((item) => (item.kind === 'reports' && item.count === 1 ? { kind: 'event', event: item.newest } : item));
}
