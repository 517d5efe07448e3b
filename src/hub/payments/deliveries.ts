// What the hub answered a provider's webhook delivery, counted in one place for both adapters: the
// metrics counter, and the provider's row in webhook_deliveries (migration 18), from which the
// incidents job opens webhooks-failing when deliveries fail again and again (a wrong secret refuses
// every one). A failure to record is logged and changes nothing of the answer.
import type { FastifyBaseLogger } from 'fastify';
import type pg from 'pg';
import { webhookDeliveries } from '../../core/metrics.ts';
import type { WebhookOutcome } from '../../payments/provider.ts';

export async function countDelivery(
  services: { pool: pg.Pool; now: () => Date },
  provider: string,
  outcome: WebhookOutcome,
  log: FastifyBaseLogger,
): Promise<void> {
  webhookDeliveries.inc({ provider, outcome: outcome.kind });
  const failed = outcome.kind === 'refused' || outcome.kind === 'retry';
  const at = services.now().toISOString();
  try {
    await services.pool.query(
      failed
        ? `INSERT INTO webhook_deliveries (provider, last_failed, failures, last_error) VALUES ($1, $2, 1, $3)
           ON CONFLICT (provider) DO UPDATE SET last_failed = excluded.last_failed, failures = webhook_deliveries.failures + 1,
             last_error = excluded.last_error`
        : `INSERT INTO webhook_deliveries (provider, last_done, failures) VALUES ($1, $2, 0)
           ON CONFLICT (provider) DO UPDATE SET last_done = excluded.last_done, failures = 0`,
      failed ? [provider, at, oneLine(`${outcome.kind}: ${outcome.why}`)] : [provider, at],
    );
  } catch (error) {
    log.warn({ err: error }, `the ${provider} webhook delivery could not be recorded for the incidents job`);
  }
}

/** What a delivery said may be anyone's bytes: one line, short, no control characters. */
function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').slice(0, 300);
}
