// Read model: the customer's saved SSH public keys (`ssh_public_keys`: email, name, the key line,
// when it was saved). Saving and removing a key are in src/hub/web/keys.ts, under the email's lock.
import type { Queryable } from './rows.ts';

export type SavedKey = { name: string; content: string; createdAt: Date };

/** The customer's keys, oldest first. */
export async function savedKeys(db: Queryable, email: string): Promise<SavedKey[]> {
  const { rows } = await db.query('SELECT name, content, created FROM ssh_public_keys WHERE email = $1 ORDER BY created, name', [email]);
  return rows.map((row) => ({ name: row.name, content: row.content, createdAt: row.created }));
}

/** The names of the customer's keys, alphabetically, at most `limit`. */
export async function savedKeyNames(db: Queryable, email: string, limit: number): Promise<string[]> {
  const { rows } = await db.query(`SELECT name FROM ssh_public_keys WHERE email = $1 ORDER BY name LIMIT ${Math.trunc(limit)}`, [email]);
  return rows.map((row) => row.name);
}

/** Those of the customer's keys whose names are given (a name that is not theirs is simply absent). */
export async function savedKeysNamed(db: Queryable, email: string, names: readonly string[]): Promise<{ name: string; content: string }[]> {
  const { rows } = await db.query('SELECT name, content FROM ssh_public_keys WHERE email = $1 AND name = ANY($2::text[])', [email, names]);
  return rows;
}
