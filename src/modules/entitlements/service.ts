import { isoSeconds } from '../../kernel/clock.js';
import { DomainError } from '../../kernel/errors.js';
import { looksLikeId } from '../../kernel/ids.js';
import type { BillingService } from '../billing/service.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';

/** Ids one batch request answers at most. */
export const ENTITLEMENT_BATCH_MAX = 1_000;

export interface Entitlement {
  externalId: string;
  active: boolean;
  features: string[];
  sources: Array<{ subscription: string; role: 'owner' | 'member'; validUntil: string }>;
}

/**
 * Who may use what (ADR 0014): read from subscriptions through the billing module's service (it
 * owns them), owner or member, each until its `validUntil` in the owner's time (a test clock's for
 * simulated customers). Owns no table. The database path: the hot path is projection.ts, which
 * falls back to this for customers on a test clock.
 */
export class EntitlementService {
  constructor(
    readonly billing: BillingService,
    readonly customers: CustomerService,
    readonly catalog: CatalogService,
  ) {}

  async forExternalId(externalId: string): Promise<Entitlement> {
    const customer = await this.#owner(externalId);
    const nowOf = new Map<string, Date>();
    const at = async (customerId: string): Promise<Date> => {
      let now = nowOf.get(customerId);
      if (!now) {
        now = await this.customers.now(customerId);
        nowOf.set(customerId, now);
      }
      return now;
    };
    const sources = await this.billing.entitlementSources(externalId, customer?.id ?? null, at);
    const features = new Set<string>();
    for (const s of sources) {
      for (const f of (await this.catalog.getProduct(s.productId)).features) features.add(f);
    }
    return {
      externalId,
      active: sources.length > 0,
      features: [...features].sort(),
      sources: sources.map((s) => ({
        subscription: s.subscription,
        role: s.role,
        validUntil: isoSeconds(s.validUntil),
      })),
    };
  }

  /** The customer of this external id, or null (members need not be customers). No key-store read. */
  async #owner(externalId: string): Promise<{ id: string } | null> {
    // External ids never look like ids (refused at creation), so an id-shaped one is no customer.
    if (looksLikeId(externalId)) return null;
    try {
      return await this.customers.account(externalId);
    } catch (error) {
      if (error instanceof DomainError && error.code === 'not_found') return null;
      throw error;
    }
  }
}
