// The payment providers this hub offers: each is on when its settings are (see docs/payments.md).
import type { Config } from '../config.ts';
import { BtcpayProvider } from './btcpay.ts';
import type { ProviderDeps } from './provider.ts';
import { StripeProvider } from './stripe.ts';

/** A configured provider: each kind's pages are mounted by the hub's route adapter for it (`id` tells them apart). */
export type ConfiguredProvider = StripeProvider | BtcpayProvider;

/** The settings every provider takes from the configuration. */
type ProviderSettings = 'baseUrl' | 'adminEmails' | 'topUpMinCents' | 'topUpMaxCents';

/** The configured providers, each given the configuration's settings and the process's services. */
export function paymentProviders(
  config: Pick<Config, 'stripe' | 'btcpay' | ProviderSettings>,
  services: Omit<ProviderDeps, ProviderSettings>,
): ConfiguredProvider[] {
  const { baseUrl, adminEmails, topUpMinCents, topUpMaxCents } = config;
  // Unset, the smallest top-up is a month of the cheapest capsul alone (the forms raise any minimum to it).
  const deps: ProviderDeps = { ...services, baseUrl, adminEmails, topUpMinCents: topUpMinCents ?? 1, topUpMaxCents };
  const providers: ConfiguredProvider[] = [];
  if (config.stripe) providers.push(new StripeProvider(config.stripe, deps));
  if (config.btcpay) providers.push(new BtcpayProvider(config.btcpay, deps));
  return providers;
}
