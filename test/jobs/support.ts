// What the jobs' tests share: a clock they move, a mailer that keeps what it is given, fake payment
// providers, and the jobs' dependencies over a test database.
import type { Message, Mailer } from '../../src/mail/mailer.ts';
import type { JobDeps, RunOptions } from '../../src/jobs/runner.ts';
import type { PaymentProvider, ProviderId, ReconcileOptions } from '../../src/payments/provider.ts';
import type { TestDatabase } from '../support/db.ts';
import { Hosts } from '../../src/ledger/hosts.ts';

export const dayMs = 86_400_000;

export type Clock = { now: () => Date; set(date: Date): void; advance(ms: number): void };

export function manualClock(start: Date): Clock {
  let current = start;
  return {
    now: () => current,
    set: (date) => {
      current = date;
    },
    advance: (ms) => {
      current = new Date(current.getTime() + ms);
    },
  };
}

export type KeptMail = Mailer & { sent: Message[]; to(email: string): Message[] };

/** Keeps every message; `failNext` makes the next sendings throw, as a mail server that is down. */
export function keepingMailer(): KeptMail & { failNext(count: number): void } {
  const sent: Message[] = [];
  let failures = 0;
  return {
    outboxDir: null,
    sent,
    to: (email) => sent.filter((message) => message.to === email),
    failNext: (count) => {
      failures = count;
    },
    async send(message) {
      if (failures > 0) {
        failures--;
        throw new Error('connect ECONNREFUSED 127.0.0.1:587');
      }
      sent.push(message);
    },
  };
}

export type FakeProvider = PaymentProvider & { calls: ReconcileOptions[] };

/** A provider whose reconciliation records how it was called, and may wait for `gate` or fail. */
export function fakeProvider(id: ProviderId, behaviour: { gate?: Promise<void>; entered?: () => void; fail?: string } = {}): FakeProvider {
  const calls: ReconcileOptions[] = [];
  return {
    id,
    label: id,
    path: `/payment/${id}`,
    webhookPath: `/payment/${id}/webhook`,
    checkoutOrigin: 'https://checkout.invalid',
    limits: { topUpMinCents: 500, topUpMaxCents: 100_000 },
    calls,
    async openCheckout() {
      throw new Error('the jobs open no checkouts');
    },
    async receiveWebhook() {
      throw new Error('the jobs receive no webhooks');
    },
    async reconcile(options) {
      calls.push(options);
      options.log(`${options.dryRun ? 'would settle' : 'settled'} nothing`);
      behaviour.entered?.();
      await behaviour.gate;
      if (behaviour.fail) throw new Error(behaviour.fail);
    },
  };
}

export function jobDeps(db: TestDatabase, clock: Clock, mailer: Mailer, extra: Partial<JobDeps> = {}): JobDeps {
  return {
    pool: db.pool,
    hosts: new Hosts({ pool: db.pool, now: clock.now }),
    mailer,
    providers: [],
    overdraftCents: -1000,
    suspensionPointCents: 0,
    graceDays: 14,
    baseUrl: 'https://capsul.test',
    supportEmail: 'support@capsul.test',
    alerts: { hostOfflineMinutes: 10, waitingMinutes: 10, webhookFailures: 5, jobFailures: 3 },
    now: clock.now,
    ...extra,
  };
}

/** Run options that keep what the jobs report and log. */
export function recording(options: Partial<RunOptions> = {}): RunOptions & { lines: string[]; logged: string[] } {
  const lines: string[] = [];
  const logged: string[] = [];
  return { report: (line) => lines.push(line), log: (line) => logged.push(line), lines, logged, ...options };
}
