import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext } from 'react';
import type { ApiClient } from '../api/client';

export interface PortalCtx {
  id: string;
  client: ApiClient;
  locale: string;
}
export const Portal = createContext<PortalCtx | null>(null);

export function usePortal(): PortalCtx {
  const ctx = useContext(Portal);
  if (!ctx) throw new Error('outside the portal');
  return ctx;
}

/** Refetches the overview (and invoices) after a change. */
export function useRefresh(): () => Promise<void> {
  const qc = useQueryClient();
  return async () => {
    await qc.invalidateQueries({ queryKey: ['portal'] });
  };
}
