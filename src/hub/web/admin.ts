import type { FastifyInstance } from 'fastify';
import type { WebContext } from './context.ts';

export async function adminPages(_app: FastifyInstance, _deps: WebContext): Promise<void> {}
