// The hub mounts each configured payment provider's pages and webhook through the route adapter for its kind.
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { ConfiguredProvider } from '../../payments/index.ts';
import { btcpayRoutes } from './btcpay.ts';
import { stripeRoutes } from './stripe.ts';

export async function providerRoutes(
  app: FastifyInstance,
  provider: ConfiguredProvider,
  services: { pool: pg.Pool; now: () => Date },
): Promise<void> {
  switch (provider.id) {
    case 'stripe':
      await app.register(stripeRoutes, { provider, ...services });
      return;
    case 'btcpay':
      await app.register(btcpayRoutes, { provider, ...services });
      return;
    default:
      return provider satisfies never;
  }
}
