import { accountEventTypes, type AccountEvent } from './account/events.ts';
import { holdEventTypes, type HoldEvent } from './hold/events.ts';
import { hostEventTypes, type HostEvent } from './host/events.ts';
import { vmEventTypes, type VmEvent } from './vm/events.ts';

/** Every event of the ledger. */
export type LedgerEvent = AccountEvent | VmEvent | HostEvent | HoldEvent;
export const ledgerEventTypes: LedgerEvent['type'][] = [...accountEventTypes, ...vmEventTypes, ...hostEventTypes, ...holdEventTypes];

/** When the fact took effect: as-of queries and balances look at this, not at when it was recorded. */
export const effectiveAt = (event: LedgerEvent): string => event.data.at;

/** Who caused an event, stored in its metadata. */
export type Actor = { kind: 'operator' | 'customer' | 'spoke' | 'job'; id: string };
export const describeActor = (actor: Actor) => `${actor.kind}:${actor.id}`;
