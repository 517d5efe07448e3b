// Pure decisions over a held payment's stream: held once, closed without credit at most once, and
// never once the money was credited (a payment recorded under its reference).
import type { Command } from '@event-driven-io/emmett';
import { requiredReason, type CommandContext } from '../events.ts';
import { invalid, notFound, refused } from '../shared/errors.ts';
import { linearFold } from '../shared/fold.ts';
import type { Cents } from '../shared/money.ts';
import { lineOfText, maxReferenceLength } from '../shared/text.ts';
import { holdIdOf, type HoldEvent, type HoldProvider } from './events.ts';

export type HoldCommandMetadata = CommandContext;

export type HoldPayment = Command<
  'HoldPayment',
  { provider: HoldProvider; reference: string; email: string | null; amountCents: Cents; expectedCents: Cents | null },
  HoldCommandMetadata
>;
/**
 * `creditedAsPaymentId`: the payment recorded under the hold's reference, if any (the payments
 * projection knows it; the account stream holds it). Its cause must give a reason.
 */
export type ResolvePaymentHold = Command<
  'ResolvePaymentHold',
  { provider: HoldProvider; reference: string; creditedAsPaymentId: number | null },
  HoldCommandMetadata
>;

export type HoldCommand = HoldPayment | ResolvePaymentHold;

export type Hold = { holdId: string | null; resolved: boolean };

export const initialHold = (): Hold => ({ holdId: null, resolved: false });

function applyHold(state: Hold, event: HoldEvent): void {
  switch (event.type) {
    case 'PaymentHeld':
      state.holdId = event.data.holdId;
      return;
    case 'PaymentHoldResolved':
      state.resolved = true;
      return;
    default: {
      const unknown: never = event;
      throw new Error(`no hold event ${(unknown as { type: string }).type}`);
    }
  }
}

/** `foldHold(state, events)`: the hold after `events`, in O(events); `evolveHold` for one event. */
export const { fold: foldHold, evolve: evolveHold } = linearFold((state: Hold): Hold => ({ ...state }), applyHold);

const providers: readonly HoldProvider[] = ['stripe', 'btcpay'];

export function decideHold(command: HoldCommand, state: Hold): HoldEvent[] {
  const at = command.metadata!.now.toISOString();
  const { provider, reference } = command.data;
  if (!providers.includes(provider)) throw invalid(`${JSON.stringify(provider)} is not a payment provider whose payments are held`);
  if (lineOfText(reference, 'a payment reference', maxReferenceLength) !== reference) {
    throw invalid('a payment reference has no spaces around it');
  }
  const holdId = holdIdOf(provider, reference);
  switch (command.type) {
    case 'HoldPayment': {
      if (state.holdId !== null) return []; // reported again: held already
      const { email, amountCents, expectedCents } = command.data;
      if (!Number.isSafeInteger(amountCents) || amountCents < 0) throw invalid('a held amount is a whole number of cents');
      if (expectedCents !== null && (!Number.isSafeInteger(expectedCents) || expectedCents < 0)) {
        throw invalid('an expected amount is a whole number of cents');
      }
      return [{ type: 'PaymentHeld', data: { holdId, provider, reference, email, amountCents, expectedCents, at } }];
    }
    case 'ResolvePaymentHold': {
      if (state.holdId === null) throw notFound(`there is no held ${provider} payment ${reference}`);
      const paymentId = command.data.creditedAsPaymentId;
      if (paymentId !== null) throw refused(`held payment ${reference} was recorded as payment ${paymentId}: nothing to close`);
      if (state.resolved) throw refused(`held payment ${reference} is closed already`);
      requiredReason(command.metadata.cause);
      return [{ type: 'PaymentHoldResolved', data: { holdId, at } }];
    }
    default: {
      const unknown: never = command;
      throw new Error(`unknown command ${(unknown as { type: string }).type}`);
    }
  }
}

export const holdDecider = { decide: decideHold, evolve: evolveHold, fold: foldHold, initialState: initialHold };
