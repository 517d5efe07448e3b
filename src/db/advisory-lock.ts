// PostgreSQL advisory locks, the one way capsul takes them, and every key capsul locks in one table
// (`advisoryLocks`), so two features never share a key by accident. A lock is held for a session (on a
// connection of its own, until unlocked or the connection dies) or for a transaction (until it commits
// or rolls back), and is waited for or only tried. Keys keep the values each lock was first taken with:
// hubs running older code still take the same locks.
import type pg from 'pg';
import { inTransaction } from './transaction.ts';

/** A key as PostgreSQL's lock functions take it (one bigint or two int4): their SQL arguments and values. */
export type AdvisoryLockKey = { readonly args: string; readonly values: readonly (string | number)[] };

/** (space, id): PostgreSQL's two-int4 form; a space is four ASCII letters. */
function pair(space: number, id: number): AdvisoryLockKey {
  return { args: '$1::int4, $2::int4', values: [space, id] };
}

/** (space, hashtext(text)): one lock per text in a space; a hash collision only makes two texts take turns. */
function pairOfText(space: number, text: string): AdvisoryLockKey {
  return { args: '$1::int4, hashtext($2)', values: [space, text] };
}

/** One bigint. */
function bigintKey(id: bigint): AdvisoryLockKey {
  return { args: '$1::int8', values: [id.toString()] };
}

/** hashtextextended(text, 0): one bigint per text. */
function textKey(text: string): AdvisoryLockKey {
  return { args: 'hashtextextended($1, 0)', values: [text] };
}

/** hashtext(text), an int4 taken as the one-bigint form. */
function shortTextKey(text: string): AdvisoryLockKey {
  return { args: 'hashtext($1)', values: [text] };
}

/** "caps": the jobs' space (src/jobs/runner.ts); 0 is the scheduler's leadership. */
const jobSpace = 0x63617073;

/** Every advisory lock capsul takes. Never change a value: a hub running the old code would no longer be excluded. */
export const advisoryLocks = {
  /** schema changes, one migrating process at a time ("capsul" in ASCII) */
  migration: bigintKey(0x63617073756cn),
  /** the embedded cluster's role passwords, set by processes starting together */
  rolePasswords: shortTextKey('capsul role passwords'),
  /** one placer at a time, so two placements never both take a host's last free memory ("placem") */
  placement: bigintKey(0x706c6163656dn),
  /** the hub that runs the hourly round (src/jobs/schedule.ts) */
  schedulerLeadership: pair(jobSpace, 0),
  /** each scheduled job, run by one process at a time */
  jobs: {
    reconcile: pair(jobSpace, 1),
    'balance-warnings': pair(jobSpace, 2),
    drift: pair(jobSpace, 3),
    receipts: pair(jobSpace, 4),
    'warning-emails': pair(jobSpace, 5),
    'incident-emails': pair(jobSpace, 6),
    incidents: pair(jobSpace, 7),
    'statement-emails': pair(jobSpace, 8),
  },
  /** one sender per email at a time ("rcpt", "warn"; "incd", 0x696e6364, was the operators' email per vanished capsul until migration 18) */
  receiptEmail: (paymentId: string) => pairOfText(0x72637074, paymentId),
  warningEmail: (warning: string) => pairOfText(0x7761726e, warning),
  /** one sender per account's monthly statement ("sttm"), keyed <account id>/<month> */
  statementEmail: (accountMonth: string) => pairOfText(0x7374746d, accountMonth),
  /** one customer's SSH key changes take turns */
  sshKeys: (email: string) => textKey(`ssh_public_keys:${email}`),
  /** one look at a BTCPay invoice at a time */
  btcpayInvoice: (invoiceId: string) => textKey(`btcpay-invoice:${invoiceId}`),
  /** one sealer of the signed log at a time ("log!" / 1); capsul_log_seal (migration 13) takes it in SQL */
  sealer: pair(0x6c6f6721, 1),
} as const;

/** What a try returns when another session holds the lock: the work did not run. */
export const notTaken: unique symbol = Symbol('advisory lock not taken');
export type NotTaken = typeof notTaken;

export type LockMode = 'wait' | 'try';

export type LockOptions = {
  /** wait (default) until the lock is free, or try once and give up */
  mode?: LockMode;
  /** session (default): on a connection of its own, unlocked when the work ends; transaction: released at commit or rollback */
  scope?: 'session' | 'transaction';
};

/**
 * Runs `work` holding the lock, and unlocks whether it returns or throws. With `session` scope the work
 * gets the lock's own connection (its other queries may use any); with `transaction` scope it gets the
 * transaction, committed when it returns. A try that finds the lock held returns `notTaken`.
 */
export function withAdvisoryLock<T>(
  pool: pg.Pool,
  key: AdvisoryLockKey,
  work: (db: pg.PoolClient) => Promise<T>,
  options: LockOptions & { mode: 'try' },
): Promise<T | NotTaken>;
export function withAdvisoryLock<T>(
  pool: pg.Pool,
  key: AdvisoryLockKey,
  work: (db: pg.PoolClient) => Promise<T>,
  options?: LockOptions & { mode?: 'wait' },
): Promise<T>;
export async function withAdvisoryLock<T>(
  pool: pg.Pool,
  key: AdvisoryLockKey,
  work: (db: pg.PoolClient) => Promise<T>,
  options: LockOptions = {},
): Promise<T | NotTaken> {
  const mode = options.mode ?? 'wait';
  if (options.scope === 'transaction') {
    return inTransaction(pool, async (db) => ((await lockUntilCommit(db, key, mode)) ? work(db) : notTaken));
  }
  const lock = await takeAdvisoryLock(pool, key, mode);
  if (!lock) return notTaken;
  try {
    return await work(lock.client);
  } finally {
    await lock.release();
  }
}

/**
 * Takes the lock in the transaction `db` is in, released when it commits or rolls back; false when
 * trying and another session holds it.
 */
export async function lockUntilCommit(db: Pick<pg.ClientBase, 'query'>, key: AdvisoryLockKey, mode: LockMode = 'wait'): Promise<boolean> {
  const fn = mode === 'wait' ? 'pg_advisory_xact_lock' : 'pg_try_advisory_xact_lock';
  const { rows } = await db.query(`SELECT ${fn}(${key.args}) AS ok`, [...key.values]);
  return mode === 'wait' || rows[0].ok === true;
}

/** A session lock held on a connection of its own. */
export type SessionLock = {
  /** the connection holding the lock: the lock lasts as long as it does */
  readonly client: pg.PoolClient;
  /** unlocks and hands the connection back; one that cannot unlock is destroyed, and its lock goes with it */
  release(): Promise<void>;
  /** the connection died, its lock with it: destroys it without asking the server anything */
  discard(): void;
};

/**
 * Takes the lock on a connection of its own and keeps it until released (the scheduler's leadership
 * spans rounds); null when trying and another session holds it.
 */
export async function takeAdvisoryLock(pool: pg.Pool, key: AdvisoryLockKey, mode: LockMode = 'wait'): Promise<SessionLock | null> {
  const client = await pool.connect();
  let taken: boolean;
  try {
    const fn = mode === 'wait' ? 'pg_advisory_lock' : 'pg_try_advisory_lock';
    const { rows } = await client.query(`SELECT ${fn}(${key.args}) AS ok`, [...key.values]);
    taken = mode === 'wait' || rows[0].ok === true;
  } catch (error) {
    client.release(true); // whether the lock was taken is unknown: the connection goes, and the lock with it
    throw error;
  }
  if (!taken) {
    client.release();
    return null;
  }
  let released = false;
  return {
    client,
    async release() {
      if (released) return;
      released = true;
      const unlocked = await client.query(`SELECT pg_advisory_unlock(${key.args})`, [...key.values]).then(
        () => true,
        () => false,
      );
      client.release(!unlocked);
    },
    discard() {
      if (released) return;
      released = true;
      client.release(true);
    },
  };
}
