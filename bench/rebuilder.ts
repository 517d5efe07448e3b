// In a process of its own, as `capsul rebuild-projections` is, on the database BENCH_REBUILD_URL:
//   (default)  rebuilds the projections back to back until told to stop (SIGTERM: after the rebuild
//              under way), printing `started` once connected and one line per rebuild: the bench's
//              appends are timed in a process the fold does not occupy;
//   --once     one rebuild, then the process's peak RSS in bytes (`rss <n>`);
//   --read     one plain read of every event, then the process's peak RSS: the baseline of --once.
import { createPool } from '../src/db/database.ts';
import { readAllEvents } from '../src/db/event-store.ts';
import { rebuildProjections } from '../src/projections/rebuild.ts';

const pool = createPool(process.env.BENCH_REBUILD_URL!, 2);
const mode = process.argv[2];
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});
try {
  if (mode === '--read') {
    for await (const batch of readAllEvents(pool)) void batch;
  } else {
    await pool.query('SELECT 1');
    if (!mode) process.stdout.write('started\n');
    do {
      await rebuildProjections(pool);
      if (mode !== '--once') process.stdout.write('rebuilt\n');
    } while (mode !== '--once' && !stopping);
  }
  // maxRSS is in kilobytes.
  if (mode) process.stdout.write(`rss ${process.resourceUsage().maxRSS * 1024}\n`);
} finally {
  await pool.end();
}
