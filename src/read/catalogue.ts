// Read model: the catalogue, the reference tables migrations seed: capsul sizes (`vm_sizes`, with
// their current monthly price) and OS images (`os_images`). A capsul's price is captured when it is
// created, so these are today's offers, never what a capsul is billed.
import { centsFromNumeric, type Cents } from '../domain/shared/money.ts';
import type { Queryable } from './rows.ts';

export type VmSize = { id: string; priceCentsPerMonth: Cents; vcpus: number; memoryMb: number; bandwidthGbPerMonth: number };

const sizeOf = (row: Record<string, unknown>): VmSize => ({
  id: row.id as string,
  priceCentsPerMonth: centsFromNumeric(row.price as string),
  vcpus: row.vcpus as number,
  memoryMb: row.memory_mb as number,
  bandwidthGbPerMonth: row.bandwidth_gb_per_month as number,
});

const sizeColumns = 'id, dollars_per_month::text AS price, vcpus, memory_mb, bandwidth_gb_per_month';

/** Every size, cheapest first. */
export async function vmSizes(db: Queryable): Promise<VmSize[]> {
  const { rows } = await db.query(`SELECT ${sizeColumns} FROM vm_sizes ORDER BY dollars_per_month, id`);
  return rows.map(sizeOf);
}

/** The size whose month costs least (by price, then id) and that month, the least a top-up must cover for a capsul to be created; null when the catalogue has none. */
export async function cheapestMonth(db: Queryable): Promise<{ size: string; priceCentsPerMonth: Cents } | null> {
  const { rows } = await db.query(`SELECT ${sizeColumns} FROM vm_sizes ORDER BY dollars_per_month, id LIMIT 1`);
  if (!rows[0]) return null;
  const { id, priceCentsPerMonth } = sizeOf(rows[0]);
  return { size: id, priceCentsPerMonth };
}

export async function vmSize(db: Queryable, id: string): Promise<VmSize | null> {
  const { rows } = await db.query(`SELECT ${sizeColumns} FROM vm_sizes WHERE id = $1`, [id]);
  return rows[0] ? sizeOf(rows[0]) : null;
}

/** `loginUser`: the user the image lets in with the customer's SSH keys (cloud-init's default user). */
export type OsImage = { id: string; description: string; deprecated: boolean; loginUser: string };

const imageColumns = 'id, description, deprecated, login_user AS "loginUser"';

/** The images a new capsul may use (not deprecated), by description. */
export async function currentOsImages(db: Queryable): Promise<OsImage[]> {
  const { rows } = await db.query(`SELECT ${imageColumns} FROM os_images WHERE NOT deprecated ORDER BY description`);
  return rows;
}

export async function osImage(db: Queryable, id: string): Promise<OsImage | null> {
  const { rows } = await db.query(`SELECT ${imageColumns} FROM os_images WHERE id = $1`, [id]);
  return rows[0] ?? null;
}
