// The customer's saved SSH public keys (/console/ssh): list, add, delete. They are web state, not
// ledger facts: a capsul copies the keys it is created with, so deleting one here changes no capsul.
// Customers are known by email from their first login, so keys work before any payment.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import type pg from 'pg';
import { Type } from 'typebox';
import { DomainError, invalid, notFound, refused } from '../../domain/shared/errors.ts';
import { maxSshKeyLength, parseSshPublicKey } from '../../domain/shared/ssh.ts';
import { advisoryLocks, lockUntilCommit } from '../../db/advisory-lock.ts';
import { inTransaction } from '../../db/transaction.ts';
import type { WebContext } from './context.ts';
import { refuseInvalidInput, requireCustomer, signedIn } from './session.ts';
import { savedKeys } from '../../read/ssh-keys.ts';
import { sshFingerprint } from '../../domain/shared/ssh.ts';
import { utcDay } from '../../core/format.ts';
import { httpStatusOf } from '../../core/http-status.ts';

export const maxKeysPerCustomer = 50;
export const maxKeyNameLength = 100;

type KeyForm = { key: string; name: string };
type PageState = { form: KeyForm; error: string | null; notice: string | null };

const blankForm: KeyForm = { key: '', name: '' };

/** After a redirect: what the last form did (fixed texts, never echoed from the address). */
const notices = new Map([
  ['added', 'The key was saved. New capsuls can now be given it.'],
  [
    'deleted',
    'The key was deleted. Capsuls that already have it keep it: remove it from ~/.ssh/authorized_keys ' +
      'on those capsuls if it should no longer log in.',
  ],
]);

// A field left out is empty; a repeated one (or one that is not text) is refused: no page here sends that.
const keysQuery = Type.Object({ done: Type.Optional(Type.String()) });
const addKeyForm = Type.Object({ key: Type.Optional(Type.String()), name: Type.Optional(Type.String()) });
const deleteKeyForm = Type.Object({ name: Type.Optional(Type.String()) });

export const keyPages: FastifyPluginAsyncTypebox<WebContext> = async (app, deps) => {
  app.addHook('preHandler', requireCustomer);
  app.addHook('preHandler', refuseInvalidInput);

  app.get('/console/ssh', { schema: { querystring: keysQuery }, attachValidation: true }, async (request, reply) => {
    const notice = notices.get(request.query.done ?? '') ?? null;
    return showKeys(reply, deps.pool, signedIn(request).email, { form: blankForm, error: null, notice });
  });

  app.post('/console/ssh', { schema: { body: addKeyForm }, attachValidation: true }, async (request, reply) => {
    const email = signedIn(request).email;
    const form = { key: request.body.key ?? '', name: request.body.name ?? '' };
    try {
      await addKey(deps.pool, email, form, deps.now());
    } catch (error) {
      // A refusal shows the form again with what was typed; anything else is ours (500).
      if (!(error instanceof DomainError)) throw error;
      // A private key pasted by mistake is not sent back into the page.
      const key = isPrivateKey(form.key) ? '' : form.key.slice(0, maxSshKeyLength);
      const typed = { key, name: form.name.slice(0, 2 * maxKeyNameLength) };
      return showKeys(reply.code(httpStatusOf(error)), deps.pool, email, { form: typed, error: error.message, notice: null });
    }
    // Post/redirect/get: reloading the page afterwards does not send the form again.
    return reply.redirect('/console/ssh?done=added', 303);
  });

  app.post('/console/ssh/delete', { schema: { body: deleteKeyForm }, attachValidation: true }, async (request, reply) => {
    const name = request.body.name ?? '';
    const { rowCount } = await deps.pool.query('DELETE FROM ssh_public_keys WHERE email = $1 AND name = $2', [
      signedIn(request).email,
      name,
    ]);
    if (rowCount === 0) {
      throw notFound(`you have no saved key named ${JSON.stringify(name.slice(0, maxKeyNameLength))}: it may have been deleted already`);
    }
    return reply.redirect('/console/ssh?done=deleted', 303);
  });
};

async function showKeys(reply: FastifyReply, pool: pg.Pool, email: string, state: PageState) {
  const keys = (await savedKeys(pool, email)).map((row) => {
    const [type = '', blob = '', ...comment] = row.content.split(' ');
    const added = utcDay(row.createdAt);
    return { name: row.name, type, fingerprint: sshFingerprint(blob), comment: comment.join(' '), added };
  });
  return reply.view('keys.eta', { keys, maxKeys: maxKeysPerCustomer, maxNameLength: maxKeyNameLength, ...state });
}

/** Validates and saves one key; throws the refusal the customer should read. */
async function addKey(pool: pg.Pool, email: string, form: KeyForm, now: Date): Promise<void> {
  if (isPrivateKey(form.key)) throw invalid('that is a private key: keep it secret and paste the public key (the .pub file) instead');
  const key = parseSshPublicKey(form.key);
  const name = keyName(form.name, key.comment);
  try {
    await inTransaction(pool, async (db) => {
      // One customer's adds take turns, so the cap and the same-key check hold against concurrent posts.
      await lockUntilCommit(db, advisoryLocks.sshKeys(email));
      const { rows } = await db.query<{ name: string; content: string }>('SELECT name, content FROM ssh_public_keys WHERE email = $1', [
        email,
      ]);
      if (rows.length >= maxKeysPerCustomer) {
        throw refused(`you can save at most ${maxKeysPerCustomer} keys: delete one you no longer use first`);
      }
      const same = rows.find((row) => row.content.split(' ')[1] === key.blob);
      if (same) throw refused(`this key is already saved, named ${JSON.stringify(same.name)}`);
      await db.query('INSERT INTO ssh_public_keys (email, name, content, created) VALUES ($1, $2, $3, $4)', [
        email,
        name,
        key.line,
        now.toISOString(),
      ]);
    });
  } catch (error) {
    // The primary key (email, name) is the one arbiter of unique names, whoever inserted first.
    if ((error as { code?: string }).code === '23505') {
      throw refused(`you already have a key named ${JSON.stringify(name)}: choose another name`);
    }
    throw error;
  }
}

/** The name typed, else the key's comment; 1–100 printable characters. */
export function keyName(typed: string, comment: string): string {
  const name = typed.trim() || comment.trim();
  if (name === '') throw invalid('this key has no comment to name it by: give it a name');
  if ([...name].length > maxKeyNameLength) throw invalid(`a key's name may be at most ${maxKeyNameLength} characters`);
  // Format characters count as unprintable too: a right-to-left override could disguise a name.
  if (/\p{C}/u.test(name)) throw invalid("a key's name may only hold printable characters (no tabs, line breaks or control characters)");
  return name;
}

const isPrivateKey = (text: string) => /PRIVATE KEY/.test(text);
