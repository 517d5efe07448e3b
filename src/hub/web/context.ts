// What the customer and admin pages share: the database (projections for reading), the ledger for
// commands, the hosts, the clock, and the nudge that runs the reactions after a command.
import type pg from 'pg';
import type { Clock } from '../../core/clock.ts';
import type { Hosts } from '../../ledger/hosts.ts';
import type { Ledger } from '../../ledger/ledger.ts';
import type { Issuer } from '../../statements/view.ts';

export type WebContext = {
  pool: pg.Pool;
  ledger: Ledger;
  hosts: Hosts;
  now: Clock;
  /** the site's public address, no trailing slash */
  baseUrl: string;
  /** shown where customers are told how to reach the operators */
  supportEmail: string;
  /** the payment providers configured, for the add-funds section */
  providers: readonly { id: string; label: string; path: string }[];
  /** who issues the monthly statements (PROVIDER_NAME, PROVIDER_ADDRESS) */
  issuer: Issuer;
  /** call after a command that the reactions act on (a capsul requested or deleted) */
  afterCommands: () => void;
};
