// The customer's capsuls: the list, creating one, and each capsul's page with its actions (start, stop,
// force-stop, delete), each behind a confirm page. Reads come from the projections; commands go through
// the ledger. A capsul that is not the customer's (or does not exist) is a page that does not exist.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type pg from 'pg';
import { coversAMonth, vmIdPattern } from '../../domain/account/decider.ts';
import { accrualEndMs, chargeCents, isAccruing, type Accrual } from '../../domain/shared/billing.ts';
import { DomainError, invalid } from '../../domain/shared/errors.ts';
import type { Cents } from '../../domain/shared/money.ts';
import type { Cause } from '../../domain/events.ts';
import { ConcurrencyError } from '../../ledger/handle.ts';
import { balancesAt } from '../../read/accounts.ts';
import { customerBeginnings, customerCapsul, customerCapsuls, type CapsulRecord } from '../../read/capsuls.ts';
import { currentOsImages, vmSizes } from '../../read/catalogue.ts';
import { savedKeyNames, savedKeysNamed } from '../../read/ssh-keys.ts';
import type { WebContext } from './context.ts';
import { requireCustomer, signedIn } from './session.ts';
import { sshFingerprint } from '../../domain/shared/ssh.ts';
import { dollars, formatMemory, utcMinute } from '../../core/format.ts';
import { httpStatusOf } from '../../core/http-status.ts';

const actions = ['start', 'stop', 'force-stop', 'delete'] as const;
type Action = (typeof actions)[number];

/** What each confirm page says will happen. */
const actionCopy: Record<Action, { title: string; done: string; button: string; explain: string; danger: boolean }> = {
  start: {
    title: 'Start',
    done: 'started',
    button: 'Start it',
    explain: 'The capsul boots, as if you pressed its power button. It is charged the same whether it runs or not.',
    danger: false,
  },
  stop: {
    title: 'Stop',
    done: 'stopped',
    button: 'Stop it',
    explain:
      'The operating system is asked to shut down cleanly. The capsul keeps its disk and addresses, and is still charged while stopped.',
    danger: false,
  },
  'force-stop': {
    title: 'Force-stop',
    done: 'force-stopped',
    button: 'Cut the power',
    explain:
      'The power is cut at once, without shutting down: unsaved data may be lost. Use it when a normal stop does not work. The capsul is still charged while stopped.',
    danger: true,
  },
  delete: {
    title: 'Delete',
    done: 'deleted',
    button: 'Delete it for good',
    explain: 'The capsul and its disk are destroyed. This cannot be undone. Charges stop now.',
    danger: true,
  },
};

/** Seconds between reloads of a capsul's page while something is under way (no JavaScript). */
const refreshSeconds = 5;
/** Limits on what a page lists and a form may carry. */
const maxCapsulsListed = 500;
const maxKeysOffered = 100;
const deletionReason = 'deleted by the customer';

// Fastify validates bodies before the CSRF and login checks run (preHandlers): the routes only attach a
// failure (attachValidation) and answer it in the handler, after both.
const createBodySchema = {
  type: 'object',
  properties: {
    size: { type: 'string', maxLength: 64 },
    os: { type: 'string', maxLength: 64 },
    // One ticked checkbox arrives as a string: fastify's validator turns it into a list of one.
    keys: { type: 'array', maxItems: maxKeysOffered, items: { type: 'string', maxLength: 500 } },
  },
} as const;
type CreateForm = { size?: string; os?: string; keys?: string[] };

const actionBodySchema = {
  type: 'object',
  required: ['version'],
  properties: { version: { type: 'string', pattern: '^[0-9]{1,18}$' } },
} as const;

export const consolePages: FastifyPluginAsync<WebContext> = async (app, deps) => {
  app.addHook('preHandler', requireCustomer);

  app.get('/console', async (request, reply) => {
    const email = signedIn(request).email;
    const vms = await listCapsuls(deps.pool, email);
    return reply.view('console.eta', { vms, steps: vms.length === 0 ? await firstSteps(deps, email) : null });
  });

  app.get('/console/create', async (request, reply) => {
    const email = signedIn(request).email;
    return reply.view('console-create.eta', await createPage(deps, email, { keys: await onlyKeyName(deps.pool, email) }));
  });

  app.post<{ Body: CreateForm }>(
    '/console/create',
    { schema: { body: createBodySchema }, attachValidation: true },
    async (request, reply) => {
      if (request.validationError) return malformedPage(reply);
      const email = signedIn(request).email;
      const form = request.body;
      try {
        if (!form.size) throw invalid('choose a size');
        if (!form.os) throw invalid('choose an operating system');
        const sshPublicKeys = await chosenKeys(deps.pool, email, form.keys ?? []);
        const { vmId } = await deps.ledger.createVm({
          email,
          size: form.size,
          os: form.os,
          sshPublicKeys,
          cause: await customer(deps, email),
        });
        deps.afterCommands();
        return reply.redirect(`/console/${vmId}`, 303);
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        const page = await createPage(deps, email, form, error.message);
        return reply.code(httpStatusOf(error)).view('console-create.eta', page);
      }
    },
  );

  app.get<{ Params: { id: string } }>('/console/:id', async (request, reply) => {
    const vm = await ownCapsul(deps.pool, signedIn(request).email, request.params.id);
    if (!vm) return notFoundPage(reply);
    const billingEndMs = accrualEndMs(vm.accrual);
    return reply.view('console-capsul.eta', {
      vm,
      actions: allowedActions(vm).map((action) => ({ action, ...copyFor(vm, action) })),
      refreshSeconds: underWay(vm) ? refreshSeconds : 0,
      price: dollars(vm.priceCentsPerMonth),
      charges: dollars(chargeCents(vm.accrual, deps.now().getTime())),
      billingStopped: billingEndMs === null ? null : utcMinute(billingEndMs),
      supportEmail: deps.supportEmail,
    });
  });

  app.get<{ Params: { id: string; action: string } }>('/console/:id/:action', async (request, reply) => {
    const action = actionNamed(request.params.action);
    const vm = action && (await ownCapsul(deps.pool, signedIn(request).email, request.params.id));
    if (!action || !vm) return notFoundPage(reply);
    if (!allowedActions(vm).includes(action)) {
      return reply.code(409).view('error.eta', {
        title: `${actionCopy[action].title}: not now`,
        message: `The capsul is ${vm.stateLabel}: it cannot be ${actionCopy[action].done} now.`,
        action: { href: `/console/${vm.id}`, label: 'Back to the capsul' },
      });
    }
    return reply.view('console-confirm.eta', { vm, action, copy: copyFor(vm, action), version: vm.version.toString() });
  });

  app.post<{ Params: { id: string; action: string }; Body: { version: string } }>(
    '/console/:id/:action',
    { schema: { body: actionBodySchema }, attachValidation: true },
    async (request, reply) => {
      if (request.validationError) return malformedPage(reply);
      const email = signedIn(request).email;
      const action = actionNamed(request.params.action);
      const vm = action && (await ownCapsul(deps.pool, email, request.params.id));
      if (!action || !vm) return notFoundPage(reply);
      // The confirm form was rendered from this version, and only for an action allowed then: anything
      // else means the capsul changed since (another tab, the host, a job).
      const seenVersion = BigInt(request.body.version);
      if (seenVersion !== vm.version || !allowedActions(vm).includes(action)) return changedMeanwhilePage(reply, vm.id);
      try {
        await perform(deps, action, vm.id, seenVersion, await customer(deps, email));
      } catch (error) {
        if (error instanceof ConcurrencyError) return changedMeanwhilePage(reply, vm.id);
        throw error;
      }
      return reply.redirect(`/console/${vm.id}`, 303);
    },
  );
};

async function perform(deps: WebContext, action: Action, vmId: string, expectedVersion: bigint, cause: Cause): Promise<void> {
  switch (action) {
    case 'start':
      await deps.ledger.startVm(vmId, cause, { expectedVersion });
      return;
    case 'stop':
    case 'force-stop':
      await deps.ledger.stopVm(vmId, cause, { force: action === 'force-stop', expectedVersion });
      return;
    case 'delete':
      await deps.ledger.deleteVm(vmId, { ...cause, reason: deletionReason }, { expectedVmVersion: expectedVersion });
      deps.afterCommands(); // the reaction turns the request into a delete operation for the host
      return;
    default: {
      const unknown: never = action;
      throw new Error(`unknown action ${String(unknown)}`);
    }
  }
}

/**
 * The customer as an event's actor: by account id (an email changes, and is personal data). An email
 * with no account yet causes no event (creating a capsul needs a payment first), so it names itself.
 */
async function customer(deps: WebContext, email: string): Promise<Cause> {
  return { by: { kind: 'customer', id: (await deps.ledger.accountIdFor(email)) ?? email } };
}

/** What a confirm page says: deleting a capsul that already vanished only takes it off the list. */
function copyFor(vm: Capsul, action: Action) {
  if (action !== 'delete' || vm.vanished === null) return actionCopy[action];
  return {
    ...actionCopy.delete,
    title: 'Remove',
    done: 'removed',
    button: 'Remove it',
    explain:
      'Its host already reported it gone: this removes it from your list, and its host is asked to make sure nothing ' +
      `of it is left. Its charges stopped when it vanished (${vm.vanished}).`,
  };
}

const actionNamed = (name: string): Action | null => ((actions as readonly string[]).includes(name) ? (name as Action) : null);

/** What the capsul's state allows: offered on its page, and checked again when a confirm form comes back. */
function allowedActions(vm: Capsul): Action[] {
  if (vm.deleting || vm.state === 'deleted') return [];
  // While its host has not done the last power request, the state shown is what it will be: a stop
  // under way can still be hurried into a force-stop; a start or a force-stop is left to finish.
  // Suspended for nonpayment: a top-up starts it again (the hub's reactions), not the customer.
  if (vm.suspension !== null) return ['delete'];
  const pending = vm.openOperations.at(-1);
  if (pending === 'stop') return ['force-stop', 'delete'];
  if (pending === 'start' || pending === 'force-stop') return ['delete'];
  const power: Action[] = ['stopped', 'crashed'].includes(vm.state)
    ? ['start']
    : ['running', 'paused'].includes(vm.state)
      ? ['stop', 'force-stop']
      : [];
  return [...power, 'delete'];
}

/** The same status the central error handler gives a domain refusal. */

function notFoundPage(reply: FastifyReply) {
  return reply.code(404).view('error.eta', { title: 'Page not found', message: 'There is no page at this address.' });
}

/** A form no page of ours sends (lists for single fields, oversized values): no detail to fix by hand. */
function malformedPage(reply: FastifyReply) {
  return reply.code(400).view('error.eta', {
    title: 'That form did not arrive whole',
    message: 'Some of its fields were missing or not what this page sends: go back, reload the page and try again.',
    action: { href: '/console', label: 'Back to your capsuls' },
  });
}

function changedMeanwhilePage(reply: FastifyReply, vmId: string) {
  return reply.code(409).view('error.eta', {
    title: 'This capsul changed meanwhile',
    message:
      'It changed after this page was shown (perhaps from another tab): nothing was done. Have a look at it as it is now, and try again if you still want to.',
    action: { href: `/console/${vmId}`, label: 'See the capsul now' },
  });
}

// ---- the list ----

async function listCapsuls(pool: pg.Pool, email: string) {
  return (await customerCapsuls(pool, email, maxCapsulsListed)).map((vm) => ({
    id: vm.id,
    size: vm.size,
    os: vm.os,
    ipv4: vm.ipv4,
    state: vm.suspended && !vm.deletionRequested ? 'suspended' : stateLabel(vm.state, vm.deletionRequested, vm.openOperations),
    created: utcMinute(vm.createdAt),
  }));
}

/** For the empty list: whether there ever was a capsul, and which steps before a first one are still to do. */
async function firstSteps(deps: WebContext, email: string): Promise<{ hadCapsuls: boolean; hasKey: boolean; funded: boolean }> {
  const { hadCapsuls, hasKey } = await customerBeginnings(deps.pool, email);
  const funds = await fundsOf(deps, email);
  return { hadCapsuls, hasKey, funded: funds !== null && funds.balanceCents > 0 };
}

// ---- creating ----

type Funds = { balanceCents: Cents; committedCents: Cents };

/** The balance now and what the undeleted capsuls take a month: what the account decider weighs a creation by. */
async function fundsOf(deps: WebContext, email: string): Promise<Funds | null> {
  const accountId = await deps.ledger.accountIdFor(email);
  if (!accountId) return null;
  const { balanceCents, accruals } = (await balancesAt(deps.pool, [accountId], deps.now())).get(accountId)!;
  const committedCents = accruals.filter(isAccruing).reduce((sum, accrual) => sum + accrual.priceCentsPerMonth, 0);
  return { balanceCents, committedCents };
}

/** The form's choices: sizes the balance covers (as the decider rules), current images, saved keys. */
async function createPage(deps: WebContext, email: string, chosen: CreateForm, error: string | null = null) {
  const [funds, sizes, images, keys] = await Promise.all([
    fundsOf(deps, email),
    vmSizes(deps.pool),
    currentOsImages(deps.pool),
    savedKeyNames(deps.pool, email, maxKeysOffered),
  ]);
  const affordable = (priceCents: Cents) => funds !== null && coversAMonth(funds.balanceCents, funds.committedCents, priceCents);
  const offered = sizes
    .map((size) => ({
      id: size.id,
      priceCents: size.priceCentsPerMonth,
      vcpus: size.vcpus,
      memory: formatMemory(size.memoryMb),
      bandwidthGb: size.bandwidthGbPerMonth,
    }))
    .filter((size) => affordable(size.priceCents))
    .map((size) => ({ ...size, price: dollars(size.priceCents) }));
  return {
    error,
    chosen: { size: chosen.size ?? offered[0]?.id ?? '', os: chosen.os ?? '', keys: chosen.keys ?? [] },
    sizes: offered,
    hiddenSizes: sizes.length - offered.length,
    images: images.map(({ id, description, loginUser }) => ({ id, description, loginUser })),
    keys,
    funds: funds && {
      balance: dollars(funds.balanceCents),
      committed: dollars(funds.committedCents),
      hasCapsuls: funds.committedCents > 0,
    },
  };
}

/** A customer with a single saved key most likely wants that one: it is ticked to begin with. */
async function onlyKeyName(pool: pg.Pool, email: string): Promise<string[]> {
  const names = await savedKeyNames(pool, email, 2);
  return names.length === 1 ? names : [];
}

/** The saved keys the customer ticked, by name: a name that is not one of theirs is refused, not ignored. */
async function chosenKeys(pool: pg.Pool, email: string, names: string[]): Promise<string[]> {
  if (names.length === 0) throw invalid('choose at least one SSH key to install on the capsul');
  const rows = await savedKeysNamed(pool, email, names);
  const unknown = names.find((name) => !rows.some((row) => row.name === name));
  if (unknown !== undefined) throw invalid(`${JSON.stringify(unknown)} is not one of your saved SSH keys`);
  return rows.map((row) => row.content as string);
}

// ---- one capsul ----

type Capsul = ReturnType<typeof toCapsul>;

/** What a customer types to log in: the image's user at the capsul's address (IPv4 first). */
export function sshCommand(loginUser: string | null, address: string | null): string | null {
  return loginUser === null || address === null ? null : `ssh ${loginUser}@${address}`;
}

/** The customer's capsul `id`, or null: unknown, malformed and someone else's all look the same. */
async function ownCapsul(pool: pg.Pool, email: string, id: string): Promise<Capsul | null> {
  if (!vmIdPattern.test(id)) return null;
  const vm = await customerCapsul(pool, email, id);
  return vm && toCapsul(vm);
}

function toCapsul(vm: CapsulRecord) {
  const deletionRequested = vm.deletionRequestedAt !== null;
  return {
    id: vm.id,
    size: vm.size,
    os: vm.osDescription,
    state: vm.state,
    /** a ready `ssh user@address` line, once the capsul has an address and its image a login user */
    sshCommand: sshCommand(vm.loginUser, vm.ipv4 ?? vm.ipv6),
    deleting: deletionRequested && vm.state !== 'deleted',
    stateLabel:
      vm.suspension !== null && !deletionRequested
        ? 'suspended (stopped for nonpayment)'
        : stateLabel(vm.state, deletionRequested, vm.openOperations),
    ipv4: vm.ipv4,
    ipv6: vm.ipv6,
    created: utcMinute(vm.createdAt),
    /** when its host saw it gone without a deletion request */
    vanished: vm.vanishedAt === null ? null : utcMinute(vm.vanishedAt),
    priceCentsPerMonth: vm.priceCentsPerMonth,
    /** as the account bills it: until its deletion was requested or, once the account recorded it, it vanished */
    accrual: {
      priceCentsPerMonth: vm.priceCentsPerMonth,
      createdAtMs: vm.createdAt.getTime(),
      deletionRequestedAtMs: vm.deletionRequestedAt?.getTime() ?? null,
      vanishedAtMs: vm.accrualEndedAt?.getTime() ?? null,
    } satisfies Accrual,
    specs: vm.specs && { vcpus: vm.specs.vcpus, memory: formatMemory(vm.specs.memoryMb), bandwidthGb: vm.specs.bandwidthGbPerMonth },
    hostKeys: vm.hostKeys,
    installedKeys: vm.sshPublicKeys.map(describeKey),
    failure: vm.failure,
    openOperations: vm.openOperations,
    /** stopped for nonpayment: since when, and when it is deleted unless funds are added */
    suspension:
      vm.suspension === null || deletionRequested
        ? null
        : { since: utcMinute(vm.suspension.since), deleteAfter: utcMinute(vm.suspension.deleteAfter) },
    version: vm.version,
  };
}

/** Something the page should follow as it happens: the page reloads itself meanwhile. */
const underWay = (vm: Capsul) => vm.state === 'pending' || vm.state === 'creating' || vm.openOperations.length > 0 || vm.deleting;

/**
 * "deleting" while a requested deletion is under way; "stopping" or "starting" while the host has not done
 * the last power request; otherwise the state the host last reported ("vanished": gone unasked).
 */
function stateLabel(state: string, deletionRequested: boolean, openOperations: readonly string[]): string {
  if (state === 'deleted' || state === 'vanished') return state;
  if (deletionRequested) return 'deleting';
  const pending = openOperations.at(-1);
  if (pending === 'stop' || pending === 'force-stop') return state === 'stopped' ? state : 'stopping';
  if (pending === 'start') return state === 'running' ? state : 'starting';
  return state;
}

/** An OpenSSH public key line as `ssh-keygen -lf` shows it: type, comment and the SHA256 of the key's blob. */
function describeKey(line: string): { type: string; comment: string; fingerprint: string } {
  const [type = '', blob = '', ...comment] = line.split(' ');
  return { type, comment: comment.join(' '), fingerprint: sshFingerprint(blob) };
}

// ---- formatting ----
