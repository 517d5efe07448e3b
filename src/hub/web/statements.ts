// The customer's monthly statements (/console/statements): the closed months their account has one
// for, each as a page and as a PDF. The statement is the read model's (src/read/statements.ts), for
// the signed-in customer's own account only: no account id is ever taken from the address.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { parseMonth, type Month } from '../../domain/account/statement.ts';
import { DomainError } from '../../domain/shared/errors.ts';
import type { Cause } from '../../domain/events.ts';
import { accountStatement, openMonthRefusal, statementsOverview } from '../../read/statements.ts';
import { statementFragment } from '../../statements/html.ts';
import { statementPdf } from '../../statements/pdf.ts';
import { monthTitle, statementView, type StatementView } from '../../statements/view.ts';
import type { WebContext } from './context.ts';
import { requireCustomer, signedIn } from './session.ts';

export const statementPages: FastifyPluginAsync<WebContext> = async (app, deps) => {
  app.addHook('preHandler', requireCustomer);

  app.get('/console/statements', async (request, reply) => {
    const accountId = await deps.ledger.accountIdFor(signedIn(request).email);
    const { months, emailed } = accountId ? await statementsOverview(deps.pool, accountId, deps.now()) : { months: [], emailed: true };
    return reply.view('statements.eta', {
      months: months.map((month) => ({ month, title: monthTitle(month) })),
      hasAccount: accountId !== null,
      emailed,
    });
  });

  // The customer's choice whether the statements are emailed: an event on their account (CSRF-checked like every POST).
  app.post<{ Body: { send: 'yes' | 'no' } }>(
    '/console/statements/emails',
    { schema: { body: emailsBodySchema }, attachValidation: true },
    async (request, reply) => {
      if (request.validationError) {
        const message = 'The form did not say whether to email your statements: go back, reload the page and try again.';
        return refusedPage(reply, { status: 400, title: 'That form did not arrive whole', message });
      }
      const email = signedIn(request).email;
      const cause: Cause = { by: { kind: 'customer', id: (await deps.ledger.accountIdFor(email)) ?? email } };
      await deps.ledger.chooseStatementEmails(email, request.body.send === 'yes', cause);
      return reply.redirect('/console/statements', 303);
    },
  );

  app.get<{ Params: { month: string } }>('/console/statements/:month', async (request, reply) => {
    const found = await ownStatement(deps, signedIn(request).email, request.params.month);
    if ('status' in found) return refusedPage(reply, found);
    return reply.view('statement.eta', {
      title: found.view.title,
      month: found.view.month,
      statement: statementFragment(found.view, { heading: false }),
    });
  });

  app.get<{ Params: { month: string } }>('/console/statements/:month/pdf', async (request, reply) => {
    const found = await ownStatement(deps, signedIn(request).email, request.params.month);
    if ('status' in found) return refusedPage(reply, found);
    const pdf = await statementPdf(found.view, deps.now());
    return reply
      .type('application/pdf')
      .header('content-disposition', `attachment; filename="statement-${found.view.month}.pdf"`)
      .header('cache-control', 'private, no-store')
      .send(pdf);
  });
};

const emailsBodySchema = {
  type: 'object',
  required: ['send'],
  properties: { send: { type: 'string', enum: ['yes', 'no'] } },
} as const;

type Refusal = { status: 400 | 404; title: string; message: string };

/** The signed-in customer's statement for the month in the address, or why there is none. */
async function ownStatement(deps: WebContext, email: string, text: string): Promise<Refusal | { view: StatementView }> {
  let month: Month;
  try {
    month = parseMonth(text);
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { status: 400, title: 'Not a month', message: `${error.message}.` };
  }
  const now = deps.now();
  const open = openMonthRefusal(month, now);
  if (open) return { status: 404, title: 'No statement yet', message: `${open}.` };
  const accountId = await deps.ledger.accountIdFor(email);
  const statement = accountId ? await accountStatement(deps.pool, accountId, month, now) : null;
  if (!statement || statement.lines.length === 0) {
    const message = `Your account has no statement for ${monthTitle(month)}: nothing happened in it.`;
    return { status: 404, title: 'No statement for that month', message };
  }
  return { view: statementView(statement, email, deps.issuer) };
}

function refusedPage(reply: FastifyReply, refusal: Refusal) {
  const action = { href: '/console/statements', label: 'Your statements' };
  return reply.code(refusal.status).view('error.eta', { title: refusal.title, message: refusal.message, action });
}
