import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
} from 'cockatiel';
import { Counter, type Registry } from 'prom-client';
import { type Clock, systemClock } from '../kernel/clock.js';
import { type CardElements, type PaymentProvider, ProviderError } from './port.js';

/** A routing rule: for a market and a card brand ('*' matches any), try these providers in order. */
export interface RouteRule {
  market: string;
  brand: string;
  providers: string[];
}

export interface RoutingDecision {
  rule: number;
  candidates: string[];
  skipped: Array<{ provider: string; reason: 'circuit_open' | 'no_token' }>;
  attempts: Array<{ provider: string; outcome: string }>;
  chosen: string | null;
}

export interface BreakerOptions {
  /** Consecutive failures (unavailable, ambiguous or slow) that open a provider's circuit. */
  failuresToOpen: number;
  /** After this long an open circuit lets one call through to test the provider again. */
  halfOpenAfterMs: number;
}

/**
 * Chooses providers for a payment by rules over market and card brand, and keeps one circuit
 * breaker per provider (cockatiel): a provider that keeps failing or timing out is skipped until
 * its half-open probe succeeds. Failover only ever happens on `unavailable` answers: a provider
 * that might have charged (ambiguous) is never replaced by another one for the same payment.
 */
export class ProviderRouter {
  readonly #providers: Map<string, PaymentProvider>;
  readonly #rules: RouteRule[];
  readonly #breakers = new Map<string, CircuitBreakerPolicy>();
  readonly #openedAtMs = new Map<string, number>();
  readonly #halfOpenAfterMs: number;
  readonly #clock: Clock;
  readonly decisions = new Counter({
    name: 'reprise_payment_routing_total',
    help: 'Payment routing: provider tried and outcome (primary, failover, skipped_circuit_open, ...)',
    labelNames: ['provider', 'outcome'] as const,
    registers: [],
  });

  constructor(
    providers: PaymentProvider[],
    rules: RouteRule[],
    breaker: BreakerOptions = { failuresToOpen: 3, halfOpenAfterMs: 5_000 },
    clock: Clock = systemClock,
  ) {
    this.#clock = clock;
    this.#providers = new Map(providers.map((p) => [p.id, p]));
    this.#rules = rules;
    this.#halfOpenAfterMs = breaker.halfOpenAfterMs;
    for (const p of providers) {
      const policy = circuitBreaker(
        handleWhen((e) => e instanceof ProviderError && e.kind !== 'rejected'),
        { halfOpenAfter: breaker.halfOpenAfterMs, breaker: new ConsecutiveBreaker(breaker.failuresToOpen) },
      );
      policy.onBreak(() => this.#openedAtMs.set(p.id, this.#clock.now().getTime()));
      policy.onReset(() => this.#openedAtMs.delete(p.id));
      this.#breakers.set(p.id, policy);
    }
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.decisions);
  }

  provider(id: string): PaymentProvider {
    const p = this.#providers.get(id);
    if (!p) throw new Error(`unknown provider instance '${id}'`);
    return p;
  }

  /** Provider instances of a vendor kind (attaching a method tokenizes it at each of them). */
  instancesOf(kind: string): PaymentProvider[] {
    return [...this.#providers.values()].filter((p) => p.kind === kind);
  }

  /** The vendor kinds a client can name when attaching a method (`simulator`). */
  kinds(): string[] {
    return [...new Set([...this.#providers.values()].map((p) => p.kind))];
  }

  /**
   * The card frame hosted checkout embeds: the first instance (in configuration order) that has
   * one, of `kind` when given. Its tokens are attached at every instance of that kind.
   */
  cardElements(kind?: string): CardElements | null {
    for (const p of this.#providers.values()) {
      if (p.cardElements && (kind === undefined || p.kind === kind)) return p.cardElements;
    }
    return null;
  }

  /** The kind of a provider instance (`simulator-a` → `simulator`), or null when there is none. */
  kindOf(instanceId: string): string | null {
    return this.#providers.get(instanceId)?.kind ?? null;
  }

  /**
   * Open and not yet due for a probe. Once `halfOpenAfterMs` has passed the provider is offered
   * again: the breaker lets that one call through and closes on success, reopens on failure.
   */
  isOpen(id: string): boolean {
    const openedAt = this.#openedAtMs.get(id);
    return (
      this.#breakers.get(id)?.state === CircuitState.Open &&
      openedAt !== undefined &&
      this.#clock.now().getTime() - openedAt < this.#halfOpenAfterMs
    );
  }

  /** The ordered candidates for a payment; providers without a token for the method are skipped. */
  plan(market: string, brand: string, tokenAt: ReadonlySet<string>): RoutingDecision {
    const index = this.#rules.findIndex(
      (r) => (r.market === '*' || r.market === market) && (r.brand === '*' || r.brand === brand),
    );
    const rule = this.#rules[index];
    const decision: RoutingDecision = {
      rule: index,
      candidates: [],
      skipped: [],
      attempts: [],
      chosen: null,
    };
    for (const id of rule?.providers ?? []) {
      if (!tokenAt.has(id)) decision.skipped.push({ provider: id, reason: 'no_token' });
      else if (this.isOpen(id)) {
        decision.skipped.push({ provider: id, reason: 'circuit_open' });
        this.decisions.inc({ provider: id, outcome: 'skipped_circuit_open' });
      } else decision.candidates.push(id);
    }
    return decision;
  }

  /** Runs one provider call through that provider's breaker. */
  async call<T>(providerId: string, fn: (p: PaymentProvider) => Promise<T>): Promise<T> {
    const breaker = this.#breakers.get(providerId);
    const provider = this.provider(providerId);
    if (!breaker) return fn(provider);
    try {
      return await breaker.execute(() => fn(provider));
    } catch (error) {
      if (error instanceof BrokenCircuitError)
        throw new ProviderError('unavailable', `${providerId}: circuit open`, providerId);
      throw error;
    }
  }

  /** Counts an attempt's outcome for /metrics. */
  count(provider: string, outcome: string): void {
    this.decisions.inc({ provider, outcome });
  }
}
