// What every process that works on the ledger shares, created once by its composition root (src/server.ts
// for the hub, src/cli/context.ts for a command) and handed down: the pool, the clock, ONE cache of
// folded streams (the ledger, the hosts, the spoke API and the reactions append through it, so a state one
// of them folded serves the others), and the services built on them.
import type pg from 'pg';
import { systemClock, type Clock } from '../core/clock.ts';
import { createStreamCache, type StreamCache } from './cache.ts';
import { Hosts } from './hosts.ts';
import { Ledger } from './ledger.ts';

export type LedgerServices = {
  pool: pg.Pool;
  now: Clock;
  streams: StreamCache;
  ledger: Ledger;
  hosts: Hosts;
};

export function ledgerServices(pool: pg.Pool, options: { now?: Clock; providerStart?: Date } = {}): LedgerServices {
  const now = options.now ?? systemClock;
  const streams = createStreamCache();
  return {
    pool,
    now,
    streams,
    ledger: new Ledger({ pool, now, cache: streams, providerStart: options.providerStart }),
    hosts: new Hosts({ pool, now, cache: streams }),
  };
}
