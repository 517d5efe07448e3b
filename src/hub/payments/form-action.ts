// What a provider's add-funds page needs of the hub's headers: its form leads to the provider's checkout.
import type { FastifyReply } from 'fastify';

/**
 * Lets a form page's form lead to a provider's hosted checkout: the POST answers with a redirect
 * there, and browsers hold redirects to the page's CSP form-action too.
 */
export function allowFormActionTo(reply: FastifyReply, origin: string): void {
  const policy = reply.getHeader('content-security-policy');
  if (typeof policy === 'string')
    reply.header('content-security-policy', policy.replace(/form-action ([^;]*)/, `form-action $1 ${origin}`));
}
