/**
 * The simulator's test tokens, named as Stripe names them. Each says what happens when it is
 * attached and when it is charged.
 */
export interface TestCard {
  brand: string;
  last4: string;
  /** Decline code when attaching; undefined: attaches fine. */
  attachDecline?: string;
  /** Decline code on every charge; undefined: charges succeed. */
  chargeDecline?: string;
  /** The provider processes the charge but answers with an error or a timeout the first time. */
  flaky?: boolean;
}

export const TEST_CARDS: Record<string, TestCard> = {
  tok_visa: { brand: 'visa', last4: '4242' },
  tok_mastercard: { brand: 'mastercard', last4: '4444' },
  tok_amex: { brand: 'amex', last4: '8431' },
  tok_chargeDeclined: { brand: 'visa', last4: '0002', attachDecline: 'card_declined' },
  tok_chargeDeclinedInsufficientFunds: { brand: 'visa', last4: '9995', attachDecline: 'insufficient_funds' },
  tok_chargeDeclinedExpiredCard: { brand: 'visa', last4: '0069', attachDecline: 'expired_card' },
  tok_chargeDeclinedIncorrectCvc: { brand: 'visa', last4: '0127', attachDecline: 'incorrect_cvc' },
  tok_chargeCustomerFail: { brand: 'visa', last4: '0341', chargeDecline: 'card_declined' },
  tok_processingError: { brand: 'visa', last4: '0119', flaky: true },
};

/** Fee the simulator charges per captured payment: 2.9 % + 30 minor units, half-up. */
export function simulatorFee(amountMinor: number): number {
  return Math.floor((amountMinor * 29 + 500) / 1000) + 30;
}
