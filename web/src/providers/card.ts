/**
 * The provider-side card form: the card fields live in a frame served from the payment provider's
 * own origin, which tokenizes them, so card numbers never reach Reprise's origin (PCI scope stays
 * at the provider, as with Stripe Elements). A provider plugs in by implementing `CardCollector`
 * and registering a factory for its `kind` (the `provider` object the page API answers).
 */
export interface ProviderInfo {
  kind: string;
  /** The provider's card-form page, loaded in an iframe. */
  elementsUrl: string;
  /** Its origin: messages are sent only to it and accepted only from it. */
  origin: string;
}

export interface CardToken {
  token: string;
  card: { brand: string; last4: string };
}

export class CardError extends Error {
  constructor(
    message: string,
    readonly field: 'number' | 'expiry' | 'cvc' | null,
  ) {
    super(message);
    this.name = 'CardError';
  }
}

export interface CardCollector {
  /** The iframe's src. */
  readonly src: string;
  /** Resolves once the frame said it is ready. */
  readonly ready: Promise<void>;
  /** Asks the frame to tokenize what was typed: a token, or a CardError with the frame's message. */
  tokenize(): Promise<CardToken>;
  /** Called with the frame's content height. */
  onResize(listener: (height: number) => void): void;
  destroy(): void;
}

type Factory = (
  provider: ProviderInfo,
  frame: () => Window | null,
  parentOrigin: string,
  locale: string,
) => CardCollector;

const factories = new Map<string, Factory>();

export function registerCardProvider(kind: string, factory: Factory): void {
  factories.set(kind, factory);
}

export function cardCollector(
  provider: ProviderInfo,
  frame: () => Window | null,
  parentOrigin: string,
  locale: string,
): CardCollector {
  const factory = factories.get(provider.kind);
  if (!factory) throw new Error(`No card form for payment provider '${provider.kind}'.`);
  return factory(provider, frame, parentOrigin, locale);
}

const TOKENIZE_TIMEOUT_MS = 20_000;

/**
 * The simulator's frame (and any provider speaking the same postMessage protocol):
 * frame → parent `reprise-card:ready | :resize | :token | :error`; parent → frame `reprise-card:tokenize`.
 */
function postMessageCollector(
  provider: ProviderInfo,
  frame: () => Window | null,
  parentOrigin: string,
  locale: string,
): CardCollector {
  const src = `${provider.elementsUrl}?parentOrigin=${encodeURIComponent(parentOrigin)}&locale=${encodeURIComponent(locale)}`;
  const origin = new URL(provider.elementsUrl).origin;
  const pending = new Map<string, { resolve: (t: CardToken) => void; reject: (e: Error) => void }>();
  const resizeListeners: Array<(h: number) => void> = [];
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });

  const onMessage = (event: MessageEvent) => {
    if (event.origin !== origin || event.source !== frame()) return;
    const m = event.data as Record<string, unknown> | null;
    if (!m || typeof m !== 'object' || typeof m.type !== 'string') return;
    switch (m.type) {
      case 'reprise-card:ready':
        markReady();
        break;
      case 'reprise-card:resize':
        if (typeof m.height === 'number' && m.height > 0 && m.height < 2000)
          for (const l of resizeListeners) l(m.height);
        break;
      case 'reprise-card:token': {
        const p = typeof m.requestId === 'string' ? pending.get(m.requestId) : undefined;
        const card = m.card as { brand?: unknown; last4?: unknown } | undefined;
        if (p && typeof m.token === 'string') {
          pending.delete(m.requestId as string);
          p.resolve({
            token: m.token,
            card: { brand: String(card?.brand ?? ''), last4: String(card?.last4 ?? '') },
          });
        }
        break;
      }
      case 'reprise-card:error': {
        const p = typeof m.requestId === 'string' ? pending.get(m.requestId) : undefined;
        if (p) {
          pending.delete(m.requestId as string);
          const field = m.field === 'number' || m.field === 'expiry' || m.field === 'cvc' ? m.field : null;
          p.reject(
            new CardError(typeof m.message === 'string' ? m.message : 'Check your card details.', field),
          );
        }
        break;
      }
    }
  };
  window.addEventListener('message', onMessage);

  return {
    src,
    ready,
    onResize(listener) {
      resizeListeners.push(listener);
    },
    tokenize() {
      const target = frame();
      if (!target) return Promise.reject(new CardError('The card form is not loaded yet.', null));
      const requestId = crypto.randomUUID();
      return new Promise<CardToken>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(requestId);
          reject(new CardError('The card form did not answer. Try again.', null));
        }, TOKENIZE_TIMEOUT_MS);
        pending.set(requestId, {
          resolve: (t) => {
            clearTimeout(timer);
            resolve(t);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        target.postMessage({ type: 'reprise-card:tokenize', requestId }, origin);
      });
    },
    destroy() {
      window.removeEventListener('message', onMessage);
      for (const p of pending.values()) p.reject(new CardError('The card form was closed.', null));
      pending.clear();
    },
  };
}

registerCardProvider('simulator', postMessageCollector);
