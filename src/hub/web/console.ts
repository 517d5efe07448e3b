// The customer's capsuls: the list, creating one, and each capsul's page with its actions.
import type { FastifyInstance } from 'fastify';
import type { WebContext } from './context.ts';
import { requireCustomer } from './session.ts';

export async function consolePages(app: FastifyInstance, deps: WebContext): Promise<void> {
  app.addHook('preHandler', requireCustomer);

  app.get('/console', async (request, reply) => {
    const { rows } = await deps.pool.query(
      `SELECT id, size, os, last_seen_ipv4 AS ipv4, state, created FROM vms WHERE email = $1 AND state <> 'deleted' ORDER BY created DESC`,
      [request.customer!.email],
    );
    return reply.view('console.eta', { vms: rows });
  });
}
