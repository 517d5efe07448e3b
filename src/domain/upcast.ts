// Events keep the shape they were written with. When an event's data changes shape, bump its version
// here and add an upcaster from the old shape, so every reader (deciders, projections, history) sees
// the current one. Version 1 is the first shape of every event type.
import type { LedgerEvent } from './events.ts';

export const currentEventVersion = 2;

type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;

/**
 * Version 2: a correction's or a deletion's reason is its cause's, kept in the metadata only. Version 1
 * wrote it in both (every writer of these events passed the same reason as the cause's), so the copy in
 * the data goes.
 */
const withoutReason: Upcaster = ({ reason: _reason, ...data }) => data;

/** upcasters[type][v] turns version v of that event's data into version v + 1. */
const upcasters: Partial<Record<LedgerEvent['type'], Record<number, Upcaster>>> = {
  PaymentInvalidated: { 1: withoutReason },
  PaymentReinstated: { 1: withoutReason },
  VmDeletionRequested: { 1: withoutReason },
};

export function upcast(type: string, data: Record<string, unknown>, version: number): LedgerEvent {
  let current = data;
  for (let v = version; v < currentEventVersion; v++) {
    const step = upcasters[type as LedgerEvent['type']]?.[v];
    if (step) current = step(current);
  }
  return { type, data: current } as LedgerEvent;
}
