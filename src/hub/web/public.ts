// The public pages (no login): the start page with the price table, pricing, FAQ, support, and the
// one stylesheet and the icon. Server-rendered with Eta, no JavaScript, nothing loaded from other sites.
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import type pg from 'pg';
import { formatCents } from '../../domain/shared/money.ts';
import { formatMemory } from '../../core/format.ts';
import { currentOsImages, vmSizes } from '../../read/catalogue.ts';

const stylesheet = readFileSync(new URL('./static/capsul.css', import.meta.url));
const favicon = readFileSync(new URL('./static/favicon.svg', import.meta.url));

export type PublicPagesOptions = { pool: pg.Pool; supportEmail: string };

type SizeRow = { id: string; dollarsPerMonth: string; vcpus: number; memory: string; bandwidthGb: number };

export const publicPages: FastifyPluginAsync<PublicPagesOptions> = async (app, deps) => {
  const catalogue = async () => {
    const [sizes, images] = await Promise.all([vmSizes(deps.pool), currentOsImages(deps.pool)]);
    return {
      sizes: sizes.map(
        (size): SizeRow => ({
          id: size.id,
          dollarsPerMonth: formatCents(size.priceCentsPerMonth),
          vcpus: size.vcpus,
          memory: formatMemory(size.memoryMb),
          bandwidthGb: size.bandwidthGbPerMonth,
        }),
      ),
      images: images.map((image) => image.description),
    };
  };

  app.get('/', async (_request, reply) => reply.view('index.eta', await catalogue()));
  app.get('/pricing', async (_request, reply) => reply.view('pricing.eta', await catalogue()));
  app.get('/faq', async (_request, reply) => reply.view('faq.eta', {}));
  app.get('/support', async (_request, reply) => reply.view('support.eta', { supportEmail: deps.supportEmail }));
  app.get('/static/capsul.css', async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=3600').type('text/css; charset=utf-8').send(stylesheet),
  );
  app.get('/static/favicon.svg', async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=86400').type('image/svg+xml').send(favicon),
  );
  // Asked for by browsers and tools that do not read the page's <link rel="icon">.
  app.get('/favicon.ico', async (_request, reply) => reply.redirect('/static/favicon.svg', 301));
};
