import type { FastifyInstance } from 'fastify';
import type { WebContext } from './context.ts';

export async function keyPages(_app: FastifyInstance, _deps: WebContext): Promise<void> {}
