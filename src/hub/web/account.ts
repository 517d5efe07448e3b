import type { FastifyInstance } from 'fastify';
import type { WebContext } from './context.ts';

export async function accountPages(_app: FastifyInstance, _deps: WebContext): Promise<void> {}
