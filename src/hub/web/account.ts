// The customer's money and timeline: the account balance (/console/account-balance) with payments,
// charges per capsul, the runway and how to add funds; and the history (/console/history) of what
// happened to their money and capsuls. Balances come from the projections (no replay per request);
// the history reads the customer's own streams only.
import { nonpaymentReason } from '../../domain/account/policy.ts';
import type { FastifyPluginAsync } from 'fastify';
import type pg from 'pg';
import type { Provider } from '../../domain/account/events.ts';
import type { WarningLevel } from '../../domain/account/events.ts';
import { customerNoteOf } from '../../domain/account/notes.ts';
import type { Actor, Cause, LedgerEvent } from '../../domain/events.ts';
import { accrualEndMs, chargeCents, creditRunsOutAtMs, isAccruing, totalChargesCents, type Accrual } from '../../domain/shared/billing.ts';
import type { Cents } from '../../domain/shared/money.ts';
import type { OperationKind } from '../../domain/vm/events.ts';
import type { EventCursor } from '../../db/event-store.ts';
import { balanceStatement, emptyStatement, type Statement, type StatementCache, type StatementPayment } from '../../read/accounts.ts';
import { accountHistoryPage, groupRoutineReports, historyKinds, type HistoryItem, type HistoryKind } from '../../read/history.ts';
import type { WebContext } from './context.ts';
import { requireCustomer, signedIn } from './session.ts';
import { LruMap } from '../../ledger/cache.ts';
import { dollars, utcMinute } from '../../core/format.ts';

/** Credit that runs out sooner than this gets a warning. */
export const lowCreditWarningMs = 7 * 86_400_000;
/** Events on one history page; older ones are a link away. */
export const historyPageSize = 100;

export const accountPages: FastifyPluginAsync<WebContext> = async (app, deps) => {
  app.addHook('preHandler', requireCustomer);
  const statements: StatementCache = new LruMap(2000);

  app.get<{ Querystring: { payments?: unknown } }>('/console/account-balance', async (request, reply) => {
    const email = signedIn(request).email;
    const now = deps.now();
    const accountId = await deps.ledger.accountIdFor(email);
    const allPayments = request.query.payments === 'all';
    const statement = accountId ? await balanceStatement(deps.pool, statements, accountId, now, { allPayments }) : emptyStatement;
    const subject = encodeURIComponent(`Adding funds to ${email}`);
    return reply.view('balance.eta', {
      ...presentStatement(statement, now),
      email,
      supportEmail: deps.supportEmail,
      providers: deps.providers,
      mailto: `mailto:${deps.supportEmail}?subject=${subject}`,
    });
  });

  app.get<{ Querystring: { before?: unknown; kind?: unknown } }>('/console/history', async (request, reply) => {
    const asked = historyQuery(request.query);
    if ('refused' in asked) {
      // The page itself, with its kinds' links, so the customer has a way on.
      const view = { kind: 'all', kinds: kindLinks('all'), entries: [], older: null, isFirstPage: true, refused: asked.refused };
      return reply.code(400).view('history.eta', view);
    }
    const accountId = await deps.ledger.accountIdFor(signedIn(request).email);
    const page = accountId ? await historyOf(deps.pool, accountId, asked) : { entries: [], older: null };
    return reply.view('history.eta', {
      ...page,
      kind: asked.kind,
      kinds: kindLinks(asked.kind),
      isFirstPage: asked.before === null,
      refused: null,
    });
  });
};

// ---- Balance ----------------------------------------------------------------------------------

/**
 * Payments counted and charges so far, as the page shows them: charges rounded once, as the balance
 * rounds them, and the payments counted are what makes balance = payments − charges, exactly.
 */
function totals(statement: Statement, nowMs: number): { paidCents: Cents; chargesCents: Cents } {
  const chargesCents = totalChargesCents(
    statement.capsuls.map((capsul) => capsul.accrual),
    nowMs,
  );
  return { paidCents: statement.balanceCents + chargesCents, chargesCents };
}

/** The statement as the page shows it: every figure formatted, every warning decided here. */
function presentStatement(statement: Statement, now: Date) {
  const nowMs = now.getTime();
  const { paidCents, chargesCents } = totals(statement, nowMs);
  const accruals = statement.capsuls.map((capsul) => capsul.accrual);
  const running = accruals.filter(isAccruing);
  const ratePerMonthCents = running.reduce((sum, accrual) => sum + accrual.priceCentsPerMonth, 0);
  // With nothing running the balance stays put: there is no runway to speak of, whatever the balance.
  const runsOutAtMs = running.length > 0 ? creditRunsOutAtMs(statement.balanceCents, accruals, nowMs) : null;
  return {
    now: utcMinute(nowMs),
    hasAccount: statement.paymentCount > 0,
    paymentCount: statement.paymentCount,
    allPaymentsShown: statement.payments.length === statement.paymentCount,
    balance: dollars(statement.balanceCents),
    paid: dollars(paidCents),
    charges: dollars(chargesCents),
    rate: running.length > 0 ? dollars(ratePerMonthCents) : null,
    // Credit already gone is the alert's to say, not a date in the past.
    runsOut: runsOutAtMs === null || statement.balanceCents <= 0 ? null : utcMinute(runsOutAtMs),
    alert: alertOf(statement.balanceCents, running.length > 0, runsOutAtMs, nowMs),
    payments: statement.payments.map((payment) => ({
      received: utcMinute(payment.receivedAtMs),
      amount: dollars(payment.amountCents),
      provider: providerNames[payment.provider] ?? payment.provider,
      reference: payment.reference,
      invalidated: payment.invalidatedAtMs !== null,
      status: paymentStatus(payment, nowMs),
    })),
    capsuls: statement.capsuls.map((capsul) => ({
      id: capsul.id,
      size: capsul.size,
      created: utcMinute(capsul.accrual.createdAtMs),
      billedUntil: billedUntil(capsul.accrual),
      perMonth: dollars(capsul.accrual.priceCentsPerMonth),
      cost: dollars(chargeCents(capsul.accrual, nowMs)),
    })),
  };
}

/** When a capsul's billing stopped, and why; null while it runs on. */
function billedUntil(accrual: Accrual): string | null {
  const endMs = accrualEndMs(accrual);
  if (endMs === null) return null;
  return `${utcMinute(endMs)} (${endMs === accrual.vanishedAtMs ? 'vanished from its host' : 'deletion requested'})`;
}

type Alert = { level: 'error' | 'warning'; message: string };

function alertOf(balanceCents: Cents, isRunning: boolean, runsOutAtMs: number | null, nowMs: number): Alert | null {
  if (balanceCents < 0 || (balanceCents === 0 && isRunning)) {
    return {
      level: 'error',
      message: isRunning
        ? `Your credit has run out (balance ${dollars(balanceCents)}): your capsuls are running on credit. Add funds now, or they may be deleted.`
        : `Your balance is negative (${dollars(balanceCents)}): add funds to settle it before creating a capsul.`,
    };
  }
  if (runsOutAtMs !== null && runsOutAtMs - nowMs <= lowCreditWarningMs) {
    return {
      level: 'warning',
      message: `Your credit runs out within a week, on ${utcMinute(runsOutAtMs)}. Add funds to keep your capsuls.`,
    };
  }
  return null;
}

const providerNames: Record<Provider, string> = { manual: 'manual (bank transfer or cash)', stripe: 'Stripe', btcpay: 'BTCPay' };

function paymentStatus(payment: StatementPayment, nowMs: number): string {
  if (payment.invalidatedAtMs !== null) {
    // The reason operators gave is theirs: what the customer is told of it is in the history.
    return `Invalidated ${utcMinute(payment.invalidatedAtMs)}: it does not count.`;
  }
  if (payment.receivedAtMs > nowMs) return `Counts from ${utcMinute(payment.receivedAtMs)}`;
  if (payment.refundedCents === payment.amountCents) return 'Refunded in full: it does not count.';
  if (payment.refundedCents > 0)
    return `${dollars(payment.refundedCents)} refunded: ${dollars(payment.amountCents - payment.refundedCents)} counts.`;
  return 'Counted';
}

// ---- History ----------------------------------------------------------------------------------

type HistoryEntry = { at: string; atIso: string; what: string; by: string };
type HistoryQuery = { before: EventCursor | null; kind: HistoryKind };

/** The page asked for (which kind, older than where), or why it cannot be shown. */
function historyQuery(query: { before?: unknown; kind?: unknown }): HistoryQuery | { refused: string } {
  const kind = query.kind === undefined || query.kind === '' ? 'all' : query.kind;
  if (!historyKinds.includes(kind as HistoryKind)) {
    return { refused: 'There is no such kind of history: choose all, money or capsuls.' };
  }
  const before = cursorOf(query.before);
  if (before === undefined) return { refused: 'That history page does not exist: start again from the newest events.' };
  return { before, kind: kind as HistoryKind };
}

/** The page's cursor: null for the newest events, undefined when it is no cursor at all. */
function cursorOf(value: unknown): EventCursor | null | undefined {
  if (value === undefined || value === '') return null;
  const match = typeof value === 'string' ? /^(\d{1,20})\.(\d{1,20})$/.exec(value) : null;
  return match ? { transactionId: match[1]!, globalPosition: match[2]! } : undefined;
}

const kindNames: Record<HistoryKind, string> = { all: 'Everything', money: 'Money', capsuls: 'Capsuls' };

/** The newest page of each kind, as links (no JavaScript: a filter is an address). */
function kindLinks(current: HistoryKind) {
  return historyKinds.map((kind) => ({ name: kindNames[kind], href: historyHref(kind, null), current: kind === current }));
}

function historyHref(kind: HistoryKind, before: string | null): string {
  const query = [kind === 'all' ? '' : `kind=${kind}`, before === null ? '' : `before=${before}`].filter(Boolean).join('&');
  return query ? `/console/history?${query}` : '/console/history';
}

/** One page of the account's and its capsuls' events of one kind, newest first, as sentences; routine reports in runs. */
async function historyOf(pool: pg.Pool, accountId: string, asked: HistoryQuery) {
  const page = await accountHistoryPage(pool, accountId, { ...asked, size: historyPageSize });
  const entries = groupRoutineReports(page.events).flatMap((item): HistoryEntry[] => {
    if (item.kind === 'reports') return [reportsEntry(item)];
    const { event, metadata } = item.event;
    const what = describe(event, metadata);
    return what === null ? [] : [{ at: utcMinute(Date.parse(event.data.at)), atIso: event.data.at, what, by: actorName(metadata.by) }];
  });
  const older = page.older && historyHref(asked.kind, `${page.older.transactionId}.${page.older.globalPosition}`);
  return { entries, older };
}

/** A run of reports that only confirmed a capsul's state: one line, dated by its newest report. */
function reportsEntry(run: Extract<HistoryItem, { kind: 'reports' }>): HistoryEntry {
  const newest = run.newest.event.data.at;
  const oldest = run.oldest.event.data.at;
  return {
    at: utcMinute(Date.parse(newest)),
    atIso: newest,
    what: `Capsul ${run.vmId} was reported ${run.state} ${run.count} times, from ${utcMinute(Date.parse(oldest))} to ${utcMinute(Date.parse(newest))}.`,
    by: actorName(run.newest.metadata.by),
  };
}

/** A note as the end of a sentence: its own final stop, or one added. */
const sentence = (note: string) => (/[.!?]$/u.test(note) ? note : `${note}.`);

/**
 * A plain sentence for the customer. A payment's correction says its customer note; a deletion, the
 * reason its cause gave (`cause`: the event's metadata). Hosts' names stay out: they are the operators'
 * business.
 */
function describe(event: LedgerEvent, cause: { reason?: string; by?: Cause['by'] }): string | null {
  const reason = cause.reason ?? 'no reason given';
  switch (event.type) {
    case 'AccountOpened':
      return 'Your account was opened.';
    case 'PaymentRecorded': {
      const d = event.data;
      const reference = d.reference ? `, reference ${d.reference}` : '';
      const late = d.recordedAt.slice(0, 16) !== d.at.slice(0, 16) ? ` It was recorded on ${utcMinute(Date.parse(d.recordedAt))}.` : '';
      return `Payment ${d.paymentId} of ${dollars(d.amountCents)} was received (${providerNames[d.provider] ?? d.provider}${reference}).${late}`;
    }
    // A correction says its customer note, never the reason operators gave (notes.ts).
    case 'PaymentInvalidated':
      return `Payment ${event.data.paymentId} was invalidated: ${sentence(customerNoteOf(event))} It no longer counts towards your balance.`;
    case 'PaymentReinstated':
      return `Payment ${event.data.paymentId} was reinstated: ${sentence(customerNoteOf(event))} It counts towards your balance again.`;
    case 'PaymentRefunded':
      return (
        `Payment ${event.data.paymentId} was refunded (${dollars(event.data.totalRefundedCents)} in all so far): ` +
        `${sentence(customerNoteOf(event))} The refunded amount no longer counts towards your balance.`
      );
    case 'BalanceWarningIssued':
      return `We emailed you a balance warning: ${warningText[event.data.level]} (balance ${dollars(event.data.balanceCents)}).`;
    case 'VmCreationRequested': {
      const d = event.data;
      return `Capsul ${d.vmId} was requested: size ${d.size}, ${d.os}, ${dollars(d.priceCentsPerMonth)} a month. Billing started.`;
    }
    // The customer's own words when they asked; never an operator's reason (it is for operators and auditors).
    case 'VmDeletionRequested': {
      const why =
        cause.by?.kind === 'customer'
          ? `: ${reason}`
          : cause.reason === nonpaymentReason
            ? ' for nonpayment: your balance ran out'
            : ' by our operators (write to support if you want to know why)';
      return `Deletion of capsul ${event.data.vmId} was requested${why}. Billing stopped.`;
    }
    case 'VmAccrualEnded':
      return (
        `Billing of capsul ${event.data.vmId} stopped as of ${utcMinute(Date.parse(event.data.at))}, when it vanished from its host: ` +
        'you are not charged for it after that.'
      );
    case 'AccountSuspended': {
      const d = event.data;
      return (
        `Your capsuls were suspended (stopped, their disks kept, still charged): your balance ${dollars(d.balanceCents)} ` +
        `reached ${dollars(d.suspensionPointCents)}. Add funds to start them again; otherwise they will be deleted ` +
        `${utcMinute(Date.parse(d.deleteAfter))}, or sooner at a balance of ${dollars(d.overdraftCents)}.` +
        (d.vmIds.length > 0 ? ` Suspended: ${d.vmIds.join(', ')}.` : '')
      );
    }
    case 'AccountResumed': {
      const d = event.data;
      return `Your top-up brought your balance to ${dollars(d.balanceCents)}: the suspension ended${d.vmIds.length > 0 ? ` and ${d.vmIds.join(', ')} start again` : ''}.`;
    }
    case 'StatementEmailsChosen':
      return event.data.send
        ? 'You chose to receive your monthly statements by email.'
        : 'You chose not to receive your monthly statements by email (they stay on the Statements page).';
    case 'VmPlaced':
      return `Capsul ${event.data.vmId} was placed on a host and is being created.`;
    case 'VmProvisioned': {
      const d = event.data;
      const addresses = [d.ipv4 && `IPv4 ${d.ipv4}`, d.ipv6 && `IPv6 ${d.ipv6}`].filter(Boolean).join(', ');
      return `Capsul ${d.vmId} was provisioned${addresses ? `: ${addresses}` : ''}.`;
    }
    case 'VmStateObserved':
      return `Capsul ${event.data.vmId} was seen ${event.data.state}.`;
    case 'VmStartRequested':
      return `A start of capsul ${event.data.vmId} was requested.`;
    case 'VmStopRequested':
      return event.data.force
        ? `A forced stop (power off) of capsul ${event.data.vmId} was requested.`
        : `A stop (shut down) of capsul ${event.data.vmId} was requested.`;
    case 'VmDeletionScheduled':
      return `Capsul ${event.data.vmId} is being deleted from its host.`;
    case 'VmDeleted':
      return `Capsul ${event.data.vmId} was deleted.`;
    case 'VmVanished':
      return (
        `Capsul ${event.data.vmId} vanished: its host reported it no longer exists (seen gone ${utcMinute(Date.parse(event.data.at))}), ` +
        'though no one asked for it to be deleted. Our operators have been told.'
      );
    case 'VmFailed': {
      const d = event.data;
      return `Capsul ${d.vmId} failed${d.operation ? ` (${operationNames[d.operation]})` : ''}: ${d.error}`;
    }
    // Hosts' and held payments' own streams are never read here.
    case 'PaymentHeld':
    case 'PaymentHoldResolved':
    case 'HostRegistered':
    case 'HostTokenRotated':
    case 'HostRemoved':
    case 'DriftDetected':
    case 'DriftResolved':
      return null;
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}

const operationNames: Record<OperationKind, string> = {
  create: 'while being created',
  start: 'while starting',
  stop: 'while stopping',
  'force-stop': 'while being powered off',
  delete: 'while being deleted',
};

function actorName(actor: Actor | undefined): string {
  switch (actor?.kind) {
    case 'customer':
      return 'you';
    case 'operator':
      return 'an operator';
    case 'spoke':
      return 'its host';
    case 'job':
      return 'capsul, automatically';
    default:
      return '';
  }
}

/** Each warning level as the history tells it. */
const warningText: Record<WarningLevel, string> = {
  'runs-out-within-week': 'your credit runs out within a week',
  'runs-out-within-day': 'your credit runs out within a day',
  'out-of-funds': 'you are out of funds',
  'deletion-within-week': 'your capsuls will be deleted within a week',
  'deletion-now': 'your capsuls are being deleted for nonpayment',
};
