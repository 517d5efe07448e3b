// Rebuilds the projections of BENCH_REBUILD_URL back to back until told to stop (SIGTERM: after the
// rebuild under way), printing one line per rebuild. A process of its own, as `capsul
// rebuild-projections` is: the bench's appends are timed in a process the fold does not occupy.
import { createPool } from '../src/db/database.ts';
import { rebuildProjections } from '../src/projections/rebuild.ts';

const pool = createPool(process.env.BENCH_REBUILD_URL!, 2);
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});
try {
  while (!stopping) {
    await rebuildProjections(pool);
    process.stdout.write('rebuilt\n');
  }
} finally {
  await pool.end();
}
