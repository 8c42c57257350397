import { forwardRef, useEffect, useImperativeHandle, useRef, useState } from 'react';
import { type CardCollector, type CardToken, cardCollector, type ProviderInfo } from './card';

export interface CardFrameHandle {
  tokenize(): Promise<CardToken>;
}

/** The provider's card form in its iframe (its own origin). */
export const CardFrame = forwardRef<
  CardFrameHandle,
  { provider: ProviderInfo; locale: string; onReady?: () => void }
>(function CardFrame({ provider, locale, onReady }, ref) {
  const iframe = useRef<HTMLIFrameElement>(null);
  const [height, setHeight] = useState(180);
  const [collector, setCollector] = useState<CardCollector | null>(null);

  useEffect(() => {
    const c = cardCollector(
      provider,
      () => iframe.current?.contentWindow ?? null,
      window.location.origin,
      locale,
    );
    c.onResize(setHeight);
    setCollector(c);
    let live = true;
    c.ready.then(() => live && onReady?.());
    return () => {
      live = false;
      c.destroy();
    };
  }, [provider, locale, onReady]);

  useImperativeHandle(
    ref,
    () => ({
      tokenize: () =>
        collector ? collector.tokenize() : Promise.reject(new Error('The card form is not loaded yet.')),
    }),
    [collector],
  );

  if (!collector) return null;
  return (
    <iframe
      ref={iframe}
      src={collector.src}
      title="Secure card payment input frame"
      style={{ width: '100%', height, border: 0, display: 'block', colorScheme: 'normal' }}
      allow="payment"
    />
  );
});
