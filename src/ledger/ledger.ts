// The ledger's commands and queries, shared by the CLI, the hub and the jobs: each loads state, calls
// the domain, appends. No business rule lives here; lookups (email → account, catalogue) do.
import { randomInt, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { isSeenAt, streamVersion } from '../db/event-store.ts';
import { accountDecider, defaultProviderStart } from '../domain/account/decider.ts';
import { accountStream, type Provider } from '../domain/account/events.ts';
import { balanceCentsAt } from '../domain/account/state.ts';
import { canonicalEmail } from '../domain/shared/email.ts';
import { invalid, notFound, refused } from '../domain/shared/errors.ts';
import type { Cents } from '../domain/shared/money.ts';
import { vmDecider, type VmCommand, type VmContext } from '../domain/vm/decider.ts';
import { vmStream } from '../domain/vm/events.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { createStreamCache, LruMap, type StreamCache } from './cache.ts';
import { requiredReason, type Cause } from '../domain/events.ts';
import { ConcurrencyError, handleCommand, type CommandDeps } from './handle.ts';
import { load, loadFromStart } from './load.ts';
import { hostWithRoom } from './reactor.ts';
import { accountIdByEmail } from '../read/accounts.ts';
import { accountOfCapsul } from '../read/capsuls.ts';
import { currentOsImages, osImage, vmSize, vmSizes } from '../read/catalogue.ts';
import { accountOfPayment, paymentByReference } from '../read/payments.ts';
import { operationById } from '../read/operations.ts';

/**
 * `providerStart`: the day the provider began; no payment is recorded as received before it
 * (PROVIDER_START_DATE). `now` and `cache`: the process's own (src/ledger/services.ts); a Ledger made
 * alone (a test) gets the system clock and a cache of its own.
 */
export type LedgerDeps = { pool: pg.Pool; now?: Clock; cache?: StreamCache; providerStart?: Date };

const maxPaymentIdBlock = 32;

export type VmRequestOptions = {
  /** the request's id: the same id again (a retry) changes nothing; default: a new one */
  operationId?: string;
  /** the capsul's stream version the user saw (a confirm form): a change since then is a ConcurrencyError */
  expectedVersion?: bigint;
};

/** A payment's correction: when a provider made it (absent: now), and what the customer is told (absent: the default). */
export type CorrectionOptions = { effectiveAt?: Date; customerNote?: string };

const changedMeanwhile = () => new ConcurrencyError('this changed meanwhile: reload and try again');

const maxResolveAttempts = 3;

export class Ledger {
  private readonly now: () => Date;
  private readonly providerStart: Date;
  private readonly deps: CommandDeps;
  /** email → account id: an account, once opened, keeps its id */
  private readonly accountIds = new LruMap<string, string>(10_000);
  /** payment ids taken from the sequence ahead of use, in blocks that grow while the process is busy */
  private paymentIds: number[] = [];
  private paymentIdBlock = 1;

  constructor(deps: LedgerDeps) {
    this.now = deps.now ?? systemClock;
    this.providerStart = deps.providerStart ?? defaultProviderStart;
    this.deps = { pool: deps.pool, cache: deps.cache ?? createStreamCache() };
  }

  async recordPayment(input: {
    email: string;
    amountCents: Cents;
    reference?: string | null;
    receivedAt?: Date;
    provider?: Provider;
    cause: Cause;
  }): Promise<{ paymentId: number; duplicate: boolean }> {
    const email = canonicalEmail(input.email);
    const reference = input.reference ?? null;
    for (let attempt = 1; ; attempt++) {
      if (reference !== null) {
        const recorded = await paymentByReference(this.deps.pool, reference);
        if (recorded && recorded.email !== email) {
          throw refused(`reference ${reference} is already recorded as payment ${recorded.id} for another account`);
        }
      }
      const accountId = (await this.accountIdFor(email)) ?? randomUUID();
      const paymentId = await this.nextPaymentId();
      const now = this.now();
      try {
        const { events, state } = await handleCommand(this.deps, accountStream(accountId), accountDecider, {
          type: 'RecordPayment',
          data: {
            accountId,
            email,
            paymentId,
            amountCents: input.amountCents,
            provider: input.provider ?? 'manual',
            reference,
            receivedAt: input.receivedAt ?? now,
          },
          metadata: { now, cause: input.cause, providerStart: this.providerStart },
        });
        if (events.length === 0) return { paymentId: state.references.get(reference!)!, duplicate: true };
        return { paymentId, duplicate: false };
      } catch (error) {
        // Another process opened an account for this email meanwhile, or took the reference: look
        // both up again.
        const constraint =
          (error as { code?: string; constraint?: string }).code === '23505' ? (error as { constraint?: string }).constraint : undefined;
        if (constraint === 'accounts_email_key' && attempt < maxResolveAttempts) continue;
        if (constraint === 'payments_reference_key') throw refused(`reference ${reference} is already recorded for another payment`);
        throw error;
      }
    }
  }

  /**
   * The cause must give a reason, which operators and auditors see; `customerNote` is what the customer
   * is told (absent: the kind's default, src/domain/account/notes.ts). `effectiveAt`: a provider's
   * correction, taking effect at the provider's time (see the decider).
   */
  invalidatePayment(paymentId: number, cause: Cause, options: CorrectionOptions = {}): Promise<{ changed: boolean }> {
    return this.correctPayment('InvalidatePayment', paymentId, cause, options);
  }

  /** As invalidatePayment. */
  reinstatePayment(paymentId: number, cause: Cause, options: CorrectionOptions = {}): Promise<{ changed: boolean }> {
    return this.correctPayment('ReinstatePayment', paymentId, cause, options);
  }

  private async correctPayment(
    type: 'InvalidatePayment' | 'ReinstatePayment',
    paymentId: number,
    cause: Cause,
    { effectiveAt, customerNote }: CorrectionOptions,
  ): Promise<{ changed: boolean }> {
    const accountId = await this.accountOfPayment(paymentId);
    const data = {
      paymentId,
      ...(effectiveAt === undefined ? {} : { effectiveAt }),
      ...(customerNote === undefined ? {} : { customerNote }),
    };
    const { events } = await handleCommand(this.deps, accountStream(accountId), accountDecider, {
      type,
      data,
      metadata: { now: this.now(), cause },
    });
    return { changed: events.length > 0 };
  }

  /** A provider's refund, as the payment's refunded total so far: a total already recorded changes nothing. */
  async recordRefund(input: {
    paymentId: number;
    totalRefundedCents: Cents;
    reference: string | null;
    effectiveAt?: Date;
    /** what the customer is told (absent: the default) */
    customerNote?: string;
    cause: Cause;
  }): Promise<{ changed: boolean }> {
    const accountId = await this.accountOfPayment(input.paymentId);
    const { cause, ...data } = input;
    const { events } = await handleCommand(this.deps, accountStream(accountId), accountDecider, {
      type: 'RecordRefund',
      data,
      metadata: { now: this.now(), cause },
    });
    return { changed: events.length > 0 };
  }

  /** The payment recorded under a provider's reference, or null. */
  async paymentIdFor(reference: string): Promise<number | null> {
    return (await paymentByReference(this.deps.pool, reference))?.id ?? null;
  }

  async createVm(input: { email: string; size: string; os: string; sshPublicKeys: string[]; cause: Cause }): Promise<{ vmId: string }> {
    const email = canonicalEmail(input.email);
    const { priceCentsPerMonth, memoryMb } = await this.sizeOf(input.size);
    await this.requireOs(input.os);
    const accountId = await this.accountIdFor(email);
    if (!accountId) throw refused(`there is no account for ${email}: record a payment first`);
    const now = this.now();
    // capsul-flask's capacity_avaliable: refuse up front rather than leave a billed capsul waiting.
    if (!(await hostWithRoom(this.deps.pool, memoryMb, now, { onlineOnly: false }))) {
      throw refused(`no host has room for a ${input.size} (${memoryMb} MiB) right now: choose a smaller size or try again later`);
    }
    const vmId = newVmId();
    await handleCommand(this.deps, accountStream(accountId), accountDecider, {
      type: 'RequestVmCreation',
      data: { vmId, size: input.size, os: input.os, sshPublicKeys: input.sshPublicKeys, priceCentsPerMonth },
      metadata: { now, cause: input.cause },
    });
    return { vmId };
  }

  /**
   * Requests the capsul's deletion (on the account stream: billing stops now). With
   * `expectedVmVersion` (the capsul's stream version a confirm form was rendered from), a capsul that
   * changed since, or whose deletion someone else requested meanwhile, is a ConcurrencyError rather
   * than a silent success. (A capsul report landing between the check and the request goes unnoticed:
   * harmless, as a deletion outranks whatever the capsul was doing.)
   */
  async deleteVm(vmId: string, cause: Cause, options: { expectedVmVersion?: bigint } = {}): Promise<{ changed: boolean }> {
    const capsul = await accountOfCapsul(this.deps.pool, vmId);
    if (!capsul) throw notFound(`there is no capsul ${vmId}`);
    const asSeen = options.expectedVmVersion !== undefined;
    if (asSeen && (await streamVersion(this.deps.pool, vmStream(vmId))) !== options.expectedVmVersion) throw changedMeanwhile();
    const now = this.now();
    const { events } = await handleCommand(this.deps, accountStream(capsul.accountId), accountDecider, {
      type: 'RequestVmDeletion',
      data: { vmId },
      metadata: { now, cause },
    });
    // Two deletes racing both pass the version check (the request lands on the account stream, not the
    // capsul's): the one that finds the deletion already requested is the one that lost.
    if (asSeen && events.length === 0) throw changedMeanwhile();
    return { changed: events.length > 0 };
  }

  /** Asks the capsul's host to start it. The same `operationId` again changes nothing. */
  startVm(vmId: string, cause: Cause, options: VmRequestOptions = {}): Promise<{ operationId: string; changed: boolean }> {
    return this.requestOnVm(vmId, options, (context, operationId, now) => ({
      type: 'RequestStart',
      data: { vmId, operationId, context },
      metadata: { now, cause },
    }));
  }

  /** Asks the capsul's host to shut it down (`force`: cut the power). The same `operationId` again changes nothing. */
  stopVm(
    vmId: string,
    cause: Cause,
    options: VmRequestOptions & { force?: boolean } = {},
  ): Promise<{ operationId: string; changed: boolean }> {
    return this.requestOnVm(vmId, options, (context, operationId, now) => ({
      type: 'RequestStop',
      data: { vmId, force: options.force ?? false, operationId, context },
      metadata: { now, cause },
    }));
  }

  /**
   * Settles an operation its host will never report the end of (its outcome report was refused and set
   * aside, or the host is gone for good) as failed, by an operator with a reason: recorded on the
   * capsul's stream as the host's failure would be, so the hub stops delivering it. A failed create
   * fails the capsul; any other operation leaves its state as its host last reported it. An
   * operation already ended changes nothing. The cause must give a reason.
   */
  async failOperation(operationId: string, cause: Cause): Promise<{ vmId: string; kind: string; changed: boolean }> {
    const operation = await operationById(this.deps.pool, operationId);
    if (!operation) throw notFound(`there is no operation ${operationId}`);
    const result = { vmId: operation.vmId, kind: operation.kind };
    if (operation.ended) return { ...result, changed: false };
    const reason = requiredReason(cause);
    const now = this.now();
    const { events } = await handleCommand(this.deps, vmStream(result.vmId), vmDecider, {
      type: 'RecordFailure',
      data: {
        vmId: result.vmId,
        host: operation.host,
        error: `settled as failed by an operator: ${reason}`,
        observedAt: now,
        reportId: null,
        operationId,
      },
      metadata: { now, cause },
    });
    return { ...result, changed: events.length > 0 };
  }

  /** An operation for the capsul's host, decided on its stream with what the account knows of it (from the vms projection). */
  private async requestOnVm(
    vmId: string,
    options: VmRequestOptions,
    command: (context: VmContext, operationId: string, now: Date) => VmCommand,
  ): Promise<{ operationId: string; changed: boolean }> {
    const context = await accountOfCapsul(this.deps.pool, vmId);
    if (!context) throw notFound(`there is no capsul ${vmId}`);
    const operationId = options.operationId ?? randomUUID();
    const { events } = await handleCommand(this.deps, vmStream(vmId), vmDecider, command(context, operationId, this.now()), {
      expectedVersion: options.expectedVersion,
    });
    return { operationId, changed: events.length > 0 };
  }

  /** The customer's choice whether each month's statement is emailed to them; changed: false when it already was so. */
  async chooseStatementEmails(emailText: string, send: boolean, cause: Cause): Promise<{ changed: boolean }> {
    const email = canonicalEmail(emailText);
    const accountId = await this.accountIdFor(email);
    if (!accountId) throw notFound('there is no account yet: statements begin with the first payment');
    const { events } = await handleCommand(this.deps, accountStream(accountId), accountDecider, {
      type: 'ChooseStatementEmails',
      data: { send },
      metadata: { now: this.now(), cause },
    });
    return { changed: events.length > 0 };
  }

  /**
   * The balance at any instant, past or future, folded from the account's events; with `knownAt`, as
   * the ledger knew the account then (only the events appended by then).
   */
  async balanceCents(emailText: string, at: Date = this.now(), knownAt?: Date): Promise<Cents> {
    const email = canonicalEmail(emailText);
    const accountId = await this.accountIdFor(email);
    if (!accountId) throw notFound(`there is no account for ${email}`);
    const stream = accountStream(accountId);
    const { state } =
      knownAt === undefined
        ? await load(this.deps.pool, stream, accountDecider)
        : await loadFromStart(this.deps.pool, stream, accountDecider, (stored) => isSeenAt(stored, { knownAt }));
    if (state.accountId === null) throw notFound(`there was no account for ${email} yet${knownAt ? ` at ${knownAt.toISOString()}` : ''}`);
    return balanceCentsAt(state, at.getTime());
  }

  async accountIdFor(email: string): Promise<string | null> {
    const known = this.accountIds.get(email);
    if (known) return known;
    const accountId = await accountIdByEmail(this.deps.pool, email);
    if (accountId) this.accountIds.set(email, accountId);
    return accountId;
  }

  private async accountOfPayment(paymentId: number): Promise<string> {
    if (!Number.isSafeInteger(paymentId) || paymentId <= 0) throw invalid(`"${paymentId}" is not a payment id`);
    const accountId = await accountOfPayment(this.deps.pool, paymentId);
    if (!accountId) throw notFound(`there is no payment ${paymentId}`);
    return accountId;
  }

  /** Payment ids are unique and increasing per process; across processes they are not in time order. */
  private async nextPaymentId(): Promise<number> {
    if (this.paymentIds.length === 0) {
      const { rows } = await this.deps.pool.query(`SELECT nextval('payment_ids')::int AS id FROM generate_series(1, $1::int)`, [
        this.paymentIdBlock,
      ]);
      this.paymentIds = rows.map((row) => row.id as number).sort((a, b) => a - b);
      this.paymentIdBlock = Math.min(this.paymentIdBlock * 2, maxPaymentIdBlock);
    }
    return this.paymentIds.shift()!;
  }

  private async sizeOf(size: string): Promise<{ priceCentsPerMonth: Cents; memoryMb: number }> {
    const found = await vmSize(this.deps.pool, size);
    if (!found) {
      const sizes = await vmSizes(this.deps.pool);
      throw invalid(`"${size}" is not a capsul size: choose one of ${sizes.map((s) => s.id).join(', ')}`);
    }
    return found;
  }

  private async requireOs(os: string): Promise<void> {
    const image = await osImage(this.deps.pool, os);
    if (!image || image.deprecated) {
      const ids = (await currentOsImages(this.deps.pool)).map((current) => current.id).sort();
      const why = image ? 'is deprecated' : 'is not an OS image';
      throw invalid(`"${os}" ${why}: choose one of ${ids.join(', ')}`);
    }
  }
}

const idAlphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** capsul-flask's form: `capsul-` and 10 random lowercase letters or digits. */
export function newVmId(): string {
  let id = 'capsul-';
  for (let i = 0; i < 10; i++) id += idAlphabet[randomInt(idAlphabet.length)];
  return id;
}
