// The payment providers this hub offers: each is on when its settings are (see docs/payments.md).
import type { Config } from '../config.ts';
import { btcpayProvider } from './btcpay.ts';
import type { PaymentProvider, ProviderDeps } from './provider.ts';
import { stripeProvider } from './stripe.ts';

/** The settings every provider takes from the configuration. */
type ProviderSettings = 'baseUrl' | 'adminEmails' | 'topUpMinCents' | 'topUpMaxCents';

/** The configured providers, each given the configuration's settings and the process's services. */
export function paymentProviders(
  config: Pick<Config, 'stripe' | 'btcpay' | ProviderSettings>,
  services: Omit<ProviderDeps, ProviderSettings>,
): PaymentProvider[] {
  const { baseUrl, adminEmails, topUpMinCents, topUpMaxCents } = config;
  const deps: ProviderDeps = { ...services, baseUrl, adminEmails, topUpMinCents, topUpMaxCents };
  const providers: PaymentProvider[] = [];
  if (config.stripe) providers.push(stripeProvider(config.stripe, deps));
  if (config.btcpay) providers.push(btcpayProvider(config.btcpay, deps));
  return providers;
}
