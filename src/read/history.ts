// Read model: what happened, as events. Which streams and fields tell an account's, a payment's or a
// capsul's story (the capsuls of an account come from the `vms` projection), and a page of an
// account's story, newest first. The events themselves are read only through src/db/event-store.ts.
import { accountStream } from '../domain/account/events.ts';
import { vmStream } from '../domain/vm/events.ts';
import { readEventsBackward, type EventCursor, type EventSelector, type StoredEvent } from '../db/event-store.ts';
import { accountOfCapsul } from './capsuls.ts';
import { accountOfPayment } from './payments.ts';
import type { Queryable } from './rows.ts';

/** An account's story: its own stream and every one of its capsuls' streams. */
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

export type HistoryPage = { events: StoredEvent[]; older: EventCursor | null };

/** At most `size` events of the account's story before `before`, newest first (the reverse of commit order), and where older ones start. */
export async function accountHistoryPage(db: Queryable, accountId: string, before: EventCursor | null, size: number): Promise<HistoryPage> {
  const events = await readEventsBackward(db, { limit: size + 1, before, selectors: await accountSelectors(db, accountId) });
  const shown = events.slice(0, size);
  const last = shown.at(-1);
  return {
    events: shown,
    older: events.length > size && last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : null,
  };
}
