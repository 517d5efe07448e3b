// The payment providers this hub offers: each is on when its settings are (see docs/payments.md).
import type { Config } from '../config.ts';
import { btcpayProvider } from './btcpay.ts';
import type { PaymentProvider, ProviderDeps } from './provider.ts';
import { stripeProvider } from './stripe.ts';

export function paymentProviders(config: Pick<Config, 'stripe' | 'btcpay'>, deps: ProviderDeps): PaymentProvider[] {
  const providers: PaymentProvider[] = [];
  if (config.stripe) providers.push(stripeProvider(config.stripe, deps));
  if (config.btcpay) providers.push(btcpayProvider(config.btcpay, deps));
  return providers;
}
