// The operators' pages (/admin, ADMIN_EMAILS only): accounts with their balances, payments with
// invalidate/reinstate, capsuls, hosts with open drift, incidents, and the most recent events. Lists read the
// projections; corrections go through the ledger's commands, the same ones the CLI calls.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type pg from 'pg';
import { maxCustomerNoteLength, maxReasonLength } from '../../domain/shared/text.ts';
import { customerNoteOf, defaultCustomerNotes } from '../../domain/account/notes.ts';
import { describeActor, type LedgerEvent } from '../../domain/events.ts';
import { DomainError, notFound } from '../../domain/shared/errors.ts';
import { canonicalEmail } from '../../domain/shared/email.ts';
import { isAccruing } from '../../domain/shared/billing.ts';
import { formatCents } from '../../domain/shared/money.ts';
import { balancesAt, newestAccounts } from '../../read/accounts.ts';
import { newestCapsuls } from '../../read/capsuls.ts';
import { paymentSelector } from '../../read/history.ts';
import { clearedIncidents, type Incident, openIncidents } from '../../read/incidents.ts';
import { newestPayments, paymentById, type PaymentRecord } from '../../read/payments.ts';
import type { Cause } from '../../domain/events.ts';
import type { Ledger } from '../../ledger/ledger.ts';
import { readAllEvents, readLogPage, type ReadAllOptions, type StoredEvent } from '../../db/event-store.ts';
import type { WebContext } from './context.ts';
import { requireAdmin, signedIn } from './session.ts';
import { resolveHold } from '../../payments/holds.ts';
import { inSnapshot } from '../../db/transaction.ts';
import { dollars } from '../../core/format.ts';
import { httpStatusOf } from '../../core/http-status.ts';

/** Each list shows at most this many rows, newest first: a page must stay readable and quick. */
const maxRows = 500;
const recentEventCount = 100;
/** Incidents cleared, shown below the open ones, most recent first. */
const clearedIncidentsShown = 100;
/** Events shown on one payment's page (a payment has a handful: recorded, then corrections). */
const maxPaymentEvents = 200;

/** Times are shown in UTC, to the second, the same on every admin page. */
const utc = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')`;
/** ISO 8601 text from the ledger ("2026-11-01T12:00:00.000000Z") in the same form. */
const utcText = (iso: string | null) => (iso === null ? null : iso.slice(0, 19).replace('T', ' '));
/** An instant read from a projection in the same form. */
const utcSecond = (at: Date | null) => (at === null ? null : utcText(at.toISOString()));

type Query = Record<string, unknown>;
type PaymentParams = { id: string };

export const adminPages: FastifyPluginAsync<WebContext> = async (app, deps) => {
  app.addHook('preHandler', requireAdmin);

  app.get('/admin', async (_request, reply) =>
    reply.view('admin.eta', { section: 'accounts', ...(await accountsWithBalances(deps.pool, deps.now())) }),
  );

  app.get<{ Querystring: Query }>('/admin/payments', async (request, reply) => {
    const filter = emailFilter(request.query);
    if ('refused' in filter) {
      return reply.code(400).view('admin-payments.eta', { section: 'payments', ...filter, holds: [], payments: [], truncated: false });
    }
    const [payments, holds] = await Promise.all([listPayments(deps.pool, filter.email), listHolds(deps.pool, filter.email)]);
    return reply.view('admin-payments.eta', { section: 'payments', email: filter.email, holds, ...payments });
  });

  app.get<{ Params: PaymentParams; Querystring: Query }>('/admin/payments/:id', async (request, reply) => {
    const payment = await findPayment(deps.pool, request.params.id);
    const notice = typeof request.query.done === 'string' ? (notices.get(request.query.done) ?? null) : null;
    return renderPayment(reply, deps.pool, payment, { notice });
  });

  for (const [action, correction] of Object.entries(corrections)) {
    app.post<{ Params: PaymentParams; Body: Query }>(`/admin/payments/:id/${action}`, async (request, reply) => {
      const payment = await findPayment(deps.pool, request.params.id);
      const field = (name: string) => (typeof request.body?.[name] === 'string' ? (request.body[name] as string).trim() : '');
      const [reason, customerNote] = [field('reason'), field('customer_note')];
      const cause: Cause = { by: { kind: 'operator', id: signedIn(request).email }, reason };
      try {
        // An empty note is no note: the customer is told the correction's default.
        const { changed } = await correction.apply(deps.ledger, payment.id, cause, customerNote === '' ? undefined : customerNote);
        // Post/redirect/get: reloading the page afterwards does not send the form again.
        return reply.redirect(`/admin/payments/${payment.id}?done=${changed ? correction.done : correction.already}`, 303);
      } catch (error) {
        // The domain's refusal of the reason or the note (missing, too long): the form again, with what was typed.
        if (!(error instanceof DomainError) || error.code !== 'invalid') throw error;
        return renderPayment(reply.code(400), deps.pool, payment, { error: error.message, reason, customerNote });
      }
    });
  }

  // Closing a held payment without credit: the form on /admin/payments, the same as capsul resolve-hold.
  app.post<{ Body: Query }>('/admin/holds/resolve', async (request, reply) => {
    const field = (name: string) => (typeof request.body?.[name] === 'string' ? (request.body[name] as string) : '');
    const [provider, reference, reason] = [field('provider'), field('reference'), field('reason')];
    try {
      await resolveHold(deps.pool, {
        provider,
        reference,
        cause: { by: { kind: 'operator', id: signedIn(request).email }, reason },
        now: deps.now(),
      });
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      const [payments, holds] = await Promise.all([listPayments(deps.pool, ''), listHolds(deps.pool, '')]);
      return reply.code(httpStatusOf(error)).view('admin-payments.eta', {
        section: 'payments',
        email: '',
        holds,
        holdError: { reference, message: error.message },
        ...payments,
      });
    }
    return reply.redirect('/admin/payments#held', 303);
  });

  app.get<{ Querystring: Query }>('/admin/capsuls', async (request, reply) => {
    const filter = emailFilter(request.query);
    if ('refused' in filter)
      return reply.code(400).view('admin-capsuls.eta', { section: 'capsuls', ...filter, capsuls: [], truncated: false });
    return reply.view('admin-capsuls.eta', { section: 'capsuls', email: filter.email, ...(await listCapsuls(deps.pool, filter.email)) });
  });

  app.get('/admin/hosts', async (_request, reply) => {
    const [hosts, drift] = await Promise.all([deps.hosts.list(), deps.hosts.drift()]);
    const openDrift = (hostId: string) => drift.filter((d) => d.host === hostId).length;
    return reply.view('admin-hosts.eta', {
      section: 'hosts',
      hosts: hosts.map((h) => ({ ...h, lastSeen: utcText(h.lastSeen), openDrift: openDrift(h.id) })),
      drift: drift.map((d) => ({ ...d, detected: utcText(d.detected) })),
    });
  });

  app.get('/admin/incidents', async (_request, reply) => {
    const [open, cleared] = await Promise.all([openIncidents(deps.pool), clearedIncidents(deps.pool, clearedIncidentsShown)]);
    return reply.view('admin-incidents.eta', {
      section: 'incidents',
      open: open.map(incidentRow),
      cleared: cleared.incidents.map(incidentRow),
      truncated: cleared.truncated,
      count: clearedIncidentsShown,
    });
  });

  app.get('/admin/events', async (_request, reply) => {
    const events = await recentEvents(deps.pool);
    return reply.view('admin-events.eta', { section: 'events', events: events.map(eventRow), count: recentEventCount });
  });
};

// ---- incidents

/** Text in pieces, instants ("2026-12-07 16:17 UTC") apart, so the page keeps each on one line. */
function withInstants(text: string): { text: string; instant: boolean }[] {
  return text
    .split(/(\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?(?: UTC)?)/)
    .filter((piece) => piece !== '')
    .map((piece) => ({ text: piece, instant: /^\d{4}-/.test(piece) }));
}

function incidentRow(incident: Incident) {
  return {
    ...incident,
    summary: withInstants(incident.summary),
    details: incident.details.map(withInstants),
    opened: utcSecond(incident.opened),
    cleared: utcSecond(incident.cleared),
    told: incident.mailedOpen === null ? null : utcSecond(incident.mailedOpen),
    toldCleared: incident.mailedClear === null ? null : utcSecond(incident.mailedClear),
  };
}

// ---- accounts

type AccountRow = { email: string; created: string; balance: string; capsuls: number; suspendedUntil: string | null };

/** Every account's balance now: the accounts and their balances read in one snapshot, three queries in all. */
async function accountsWithBalances(pool: pg.Pool, now: Date): Promise<{ accounts: AccountRow[]; truncated: boolean }> {
  return inSnapshot(pool, async (db) => {
    const { rows, truncated } = limited(await newestAccounts(db, maxRows + 1));
    const balances = await balancesAt(
      db,
      rows.map((row) => row.id),
      now,
    );
    const accounts = rows.map((row): AccountRow => {
      const { accruals, balanceCents } = balances.get(row.id)!;
      return {
        email: row.email,
        created: utcSecond(row.createdAt)!,
        balance: dollars(balanceCents),
        capsuls: accruals.filter(isAccruing).length,
        suspendedUntil: row.suspension === null ? null : utcSecond(row.suspension.deleteAfter),
      };
    });
    return { accounts, truncated };
  });
}

// ---- payments

type Payment = {
  id: number;
  accountId: string;
  email: string;
  dollars: string;
  /** the refunded total, when anything was refunded */
  refunded: string | null;
  provider: string;
  reference: string | null;
  received: string;
  recorded: string;
  invalidated: boolean;
  invalidatedAt: string | null;
  invalidationReason: string | null;
};

function toPayment(record: PaymentRecord): Payment {
  return {
    id: record.id,
    accountId: record.accountId,
    email: record.email,
    dollars: formatCents(record.amountCents),
    refunded: record.refundedCents === 0 ? null : formatCents(record.refundedCents),
    provider: record.provider,
    reference: record.reference,
    received: utcSecond(record.receivedAt)!,
    recorded: utcSecond(record.recordedAt)!,
    invalidated: record.invalidated,
    invalidatedAt: utcSecond(record.invalidatedAt),
    invalidationReason: record.invalidationReason,
  };
}

async function listPayments(pool: pg.Pool, email: string): Promise<{ payments: Payment[]; truncated: boolean }> {
  const { rows: shown, truncated } = limited(await newestPayments(pool, { email, limit: maxRows + 1 }));
  return { payments: shown.map(toPayment), truncated };
}

type HeldPayment = {
  provider: string;
  reference: string;
  email: string | null;
  amount: string;
  expected: string | null;
  reason: string;
  held: string;
  /** the payment recorded for it since (an operator's record-payment with the same reference), if any */
  paymentId: number | null;
  /** closed without credit: when, by whom, why */
  closed: { at: string; by: string | null; why: string | null } | null;
};

/** Money a provider reported that was not credited on its own: open holds first, then the newest. */
async function listHolds(pool: pg.Pool, email: string): Promise<HeldPayment[]> {
  const { rows } = await pool.query(
    `SELECT h.provider, h.reference, h.email, h.amount_cents, h.expected_cents, h.reason, ${utc('h.held')} AS held, p.id AS payment_id,
            ${utc('h.resolved')} AS resolved, h.resolved_by, h.resolution
     FROM payment_holds h LEFT JOIN payments p ON p.reference = h.reference
     WHERE ($1 = '' OR h.email = $1) ORDER BY (p.id IS NULL AND h.resolved IS NULL) DESC, h.held DESC LIMIT $2`,
    [email, maxRows],
  );
  return rows.map((row) => ({
    provider: row.provider,
    reference: row.reference,
    email: row.email,
    amount: dollars(Number(row.amount_cents)),
    expected: row.expected_cents === null ? null : dollars(Number(row.expected_cents)),
    reason: row.reason,
    held: row.held,
    paymentId: row.payment_id === null ? null : Number(row.payment_id),
    closed: row.resolved === null ? null : { at: row.resolved, by: row.resolved_by, why: row.resolution },
  }));
}

/** The payment a URL names; anything that is not a payment id is simply not found. */
async function findPayment(pool: pg.Pool, idText: string): Promise<Payment> {
  if (!/^\d{1,15}$/.test(idText) || Number(idText) <= 0) throw notFound('there is no such payment');
  const payment = await paymentById(pool, Number(idText));
  if (!payment) throw notFound(`there is no payment ${idText}`);
  return toPayment(payment);
}

/** The two corrections the CLI also offers, each with the outcome shown after it. */
const corrections: Record<
  string,
  {
    apply: (ledger: Ledger, paymentId: number, cause: Cause, customerNote: string | undefined) => Promise<{ changed: boolean }>;
    done: string;
    already: string;
  }
> = {
  invalidate: {
    apply: (ledger, id, cause, customerNote) => ledger.invalidatePayment(id, cause, { customerNote }),
    done: 'invalidated',
    already: 'already-invalid',
  },
  reinstate: {
    apply: (ledger, id, cause, customerNote) => ledger.reinstatePayment(id, cause, { customerNote }),
    done: 'reinstated',
    already: 'already-valid',
  },
};

/** What a correction's redirect may announce: only these texts, whatever the query string says. */
const notices = new Map([
  ['invalidated', 'Payment invalidated: it no longer counts toward the balance.'],
  ['already-invalid', 'This payment was already invalid: nothing changed.'],
  ['reinstated', 'Payment reinstated: it counts toward the balance again.'],
  ['already-valid', 'This payment was already valid: nothing changed.'],
]);

async function renderPayment(
  reply: FastifyReply,
  pool: pg.Pool,
  payment: Payment,
  form: { notice?: string | null; error?: string; reason?: string; customerNote?: string },
) {
  const events = await paymentEvents(pool, payment);
  return reply.view('admin-payment.eta', {
    section: 'payments',
    payment,
    events: events.map(eventRow),
    maxReasonLength,
    maxCustomerNoteLength,
    defaultNote: defaultCustomerNotes[payment.invalidated ? 'PaymentReinstated' : 'PaymentInvalidated'],
    notice: form.notice ?? null,
    error: form.error ?? null,
    // The note's check names it; every other refusal of the form is the reason's.
    errorField: form.error === undefined ? null : form.error.startsWith('a customer note') ? 'customer_note' : 'reason',
    reason: form.reason ?? '',
    customerNote: form.customerNote ?? '',
  });
}

async function paymentEvents(pool: pg.Pool, payment: Payment): Promise<StoredEvent[]> {
  return collect(
    pool,
    {
      selectors: [paymentSelector(payment.accountId, payment.id)],
    },
    maxPaymentEvents,
  );
}

// ---- capsuls

async function listCapsuls(pool: pg.Pool, email: string) {
  const { rows, truncated } = limited(await newestCapsuls(pool, { email, limit: maxRows + 1 }));
  const capsuls = rows.map((vm) => ({
    id: vm.id,
    email: vm.email,
    size: vm.size,
    state: vm.state,
    host: vm.host,
    ipv4: vm.ipv4,
    created: utcSecond(vm.createdAt),
    deleted: utcSecond(vm.deletionRequestedAt),
    vanished: utcSecond(vm.vanishedAt),
    billing_ended: utcSecond(vm.accrualEndedAt),
  }));
  return { capsuls, truncated };
}

// ---- events

/** The newest events, newest first (commit order, as every reader of the ledger uses). */
function recentEvents(pool: pg.Pool): Promise<StoredEvent[]> {
  return readLogPage(pool, { direction: 'backward', limit: recentEventCount });
}

type EventRow = {
  time: string;
  stream: string;
  type: string;
  who: string;
  reason: string | null;
  /** a payment correction's: what the customer's history says of it, and whether that is its kind's default */
  customerNote: { text: string; isDefault: boolean } | null;
  paymentId: number | null;
  vmId: string | null;
};

function eventRow(stored: StoredEvent): EventRow {
  const data = stored.event.data as { paymentId?: unknown; vmId?: unknown };
  return {
    time: utcText(stored.recordedAt)!,
    stream: stored.streamId,
    type: stored.event.type,
    who: stored.metadata.by ? describeActor(stored.metadata.by) : '',
    reason: stored.metadata.reason ?? null,
    customerNote: customerNoteRow(stored.event),
    paymentId: typeof data.paymentId === 'number' ? data.paymentId : null,
    vmId: typeof data.vmId === 'string' ? data.vmId : null,
  };
}

function customerNoteRow(event: LedgerEvent): EventRow['customerNote'] {
  switch (event.type) {
    case 'PaymentInvalidated':
    case 'PaymentReinstated':
    case 'PaymentRefunded':
      return { text: customerNoteOf(event), isDefault: event.data.customerNote === undefined };
    default:
      return null;
  }
}

async function collect(pool: pg.Pool, filter: ReadAllOptions, max: number): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  for await (const batch of readAllEvents(pool, { ...filter, batchSize: max })) {
    events.push(...batch.slice(0, max - events.length));
    if (events.length >= max) break;
  }
  return events;
}

// ---- helpers

/**
 * ?email=… narrows a list to one account, compared in its canonical form like every other way in; absent,
 * empty or repeated shows all. Text that is no email address is refused with the rule it broke, and the
 * page lists nothing rather than everything.
 */
function emailFilter(query: Query): { email: string } | { email: string; refused: string } {
  if (typeof query.email !== 'string' || query.email.trim() === '') return { email: '' };
  try {
    return { email: canonicalEmail(query.email) };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { email: query.email.slice(0, 254), refused: error.message };
  }
}

/** Rows fetched with a LIMIT one past `maxRows`: the page says when there were more. */
function limited<T>(rows: T[]): { rows: T[]; truncated: boolean } {
  return { rows: rows.slice(0, maxRows), truncated: rows.length > maxRows };
}
