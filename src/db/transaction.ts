// Work in one transaction on one connection: committed when it returns, rolled back when it throws
// (a connection whose rollback failed is not handed out again).
import type pg from 'pg';

export async function inTransaction<T>(pool: pg.Pool, work: (db: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}

/** Several reads that must describe one instant (balances: accounts and their payments and capsuls as of one commit). */
export function inSnapshot<T>(pool: pg.Pool, work: (db: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, work, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
}
