// A stream's folded state written out and read back (src/ledger/load.ts keeps it, migration 23). States
// hold Maps and Sets, which JSON does not: each decider that snapshots says explicitly how its state is
// written, and reads it back checking every field, so a snapshot of another shape, or one written by hand,
// is refused rather than half read.

export type SnapshotCodec<S> = {
  /**
   * Bumped whenever the state's shape, its encoding, or what `evolve` makes of any event changes: a
   * snapshot of another shape version is ignored and the stream folded from the start.
   */
  shapeVersion: number;
  /** The state as a JSON value. */
  encode: (state: S) => unknown;
  /** The state back from `encode`'s JSON; throws SnapshotShapeError for anything else. */
  decode: (json: unknown) => S;
};

export class SnapshotShapeError extends Error {}

function fail(what: string, value: unknown): never {
  throw new SnapshotShapeError(`snapshot: ${what} is not as written (${JSON.stringify(value)?.slice(0, 80)})`);
}

export function list(value: unknown, what: string): unknown[] {
  return Array.isArray(value) ? value : fail(what, value);
}

/** A fixed-length row of a list (a payment, a capsul), as `encode` wrote it. */
export function row(value: unknown, length: number, what: string): unknown[] {
  return Array.isArray(value) && value.length === length ? value : fail(what, value);
}

export function fields(value: unknown, what: string): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : fail(what, value);
}

export function number(value: unknown, what: string): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fail(what, value);
}

export function text(value: unknown, what: string): string {
  return typeof value === 'string' ? value : fail(what, value);
}

export function flag(value: unknown, what: string): boolean {
  return typeof value === 'boolean' ? value : fail(what, value);
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  return allowed.includes(value as T) ? (value as T) : fail(what, value);
}

/** `read(value)`, or null when the value is null. */
export function orNull<T>(value: unknown, read: (value: unknown, what: string) => T, what: string): T | null {
  return value === null ? null : read(value, what);
}
