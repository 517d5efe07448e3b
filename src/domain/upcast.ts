// Events keep the shape they were written with. When an event's data changes shape, bump its version
// here and add an upcaster from the old shape, so every reader (deciders, projections, history) sees
// the current one. Version 1 is the first shape of every event type.
import type { LedgerEvent } from './events.ts';

export const currentEventVersion = 1;

type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;

/** upcasters[type][v] turns version v of that event's data into version v + 1. */
const upcasters: Partial<Record<LedgerEvent['type'], Record<number, Upcaster>>> = {};

export function upcast(type: string, data: Record<string, unknown>, version: number): LedgerEvent {
  let current = data;
  for (let v = version; v < currentEventVersion; v++) {
    const step = upcasters[type as LedgerEvent['type']]?.[v];
    if (step) current = step(current);
  }
  return { type, data: current } as LedgerEvent;
}
