import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext } from 'react';
import { type ApiClient, ApiError } from '../api/client';

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

/** Throws the API's problem as an ApiError; answers the data. */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok || data === undefined) throw new ApiError(response.status, (error ?? {}) as never);
  return data;
}

/** Refetches the overview (and invoices) after a change. */
export function useRefresh(): () => Promise<void> {
  const qc = useQueryClient();
  return async () => {
    await qc.invalidateQueries({ queryKey: ['portal'] });
  };
}
