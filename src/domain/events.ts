import { accountEventTypes, type AccountEvent } from './account/events.ts';
import { holdEventTypes, type HoldEvent } from './hold/events.ts';
import { hostEventTypes, type HostEvent } from './host/events.ts';
import { lineOfText, maxActorIdLength, maxReasonLength } from './shared/text.ts';
import { vmEventTypes, type VmEvent } from './vm/events.ts';

/** Every event of the ledger. */
export type LedgerEvent = AccountEvent | VmEvent | HostEvent | HoldEvent;
export const ledgerEventTypes: LedgerEvent['type'][] = [...accountEventTypes, ...vmEventTypes, ...hostEventTypes, ...holdEventTypes];

/**
 * When the fact holds from, for as-of and row history: when it took effect (its `at`, not when it was
 * recorded), except that an account is an identity, not a fact in time (null: always), so it is there
 * for any payment received before it opened.
 */
export const holdsFrom = (event: LedgerEvent): string | null => (event.type === 'AccountOpened' ? null : event.data.at);

/**
 * Who caused an event: an operator by name, a customer by account id, a spoke by host id, a job by
 * name. Stored in the event's metadata.
 */
export type Actor = { kind: 'operator' | 'customer' | 'spoke' | 'job'; id: string };
export const describeActor = (actor: Actor) => `${actor.kind}:${actor.id}`;

/**
 * Who acted and, where it matters, why (an operator's correction, a deletion): the one cause of a
 * command. It arrives in the command's metadata and is stored in the metadata of the events it
 * causes, never in their data.
 */
export type Cause = { by: Actor; reason?: string };

/** The cause as it is stored: who acted and the reason, each one line of visible text, trimmed. */
export function checkedCause(cause: Cause): Cause {
  const by = { kind: cause.by.kind, id: lineOfText(cause.by.id, 'who acted', maxActorIdLength) };
  return cause.reason === undefined ? { by } : { by, reason: lineOfText(cause.reason, 'a reason', maxReasonLength) };
}

/** The reason a cause must give (a correction, a deletion, a hold's closing, a failed operation): one line of visible text. */
export function requiredReason(cause: Cause): string {
  return lineOfText(cause.reason ?? '', 'a reason', maxReasonLength);
}

/** What every command carries beside its data: the instant it is decided at, and its cause. */
export type CommandContext = { now: Date; cause: Cause };
