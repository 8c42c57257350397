import { useInfiniteQuery, useQueryClient } from '@tanstack/react-query';
import { createContext, useContext } from 'react';
import { type ApiClient, apiClient, type paths } from '../api/client';
import { fractionDigits } from '../ui/format';

/**
 * The console's API client: no bearer, so the HttpOnly `reprise_admin` session cookie (same origin
 * only) authenticates every call. The API key itself never reaches browser storage.
 */
export const admin: ApiClient = apiClient();

const sessionEndedListeners = new Set<() => void>();

/**
 * Calls `listener` whenever a console call is refused with 401: the session ended (idle timeout,
 * sign-out in another tab, the key revoked). Returns the unsubscribe.
 */
export function onSessionEnded(listener: () => void): () => void {
  sessionEndedListeners.add(listener);
  return () => {
    sessionEndedListeners.delete(listener);
  };
}

admin.use({
  onResponse({ request, response }) {
    if (response.status !== 401) return;
    // The sign-in's own refusal, and the session check that finds none, are not an ended session.
    const path = new URL(request.url).pathname;
    if (
      path === '/v1/admin/sessions' ||
      (path === '/v1/admin/sessions/current' && request.method === 'GET')
    ) {
      return;
    }
    for (const listener of sessionEndedListeners) listener();
  },
});

export interface AdminSession {
  keyId: string;
  scopes: string[];
  expiresAt: string;
}
export const Session = createContext<AdminSession | null>(null);

export function useSession(): AdminSession {
  const s = useContext(Session);
  if (!s) throw new Error('outside the admin console');
  return s;
}

/** A page of an API list: its rows and the cursor of the next page. */
export interface Page<T> {
  data: T[];
  nextCursor?: string | null;
}

/** Rows shown per page of every console list. */
export const PAGE_SIZE = '20';

/**
 * A list read page by page with the API's cursors: `rows` so far, `more()` fetches the next page.
 * `fetchPage` gets the cursor (undefined for the first page) and the page size.
 */
export function usePaged<T>(
  key: readonly unknown[],
  fetchPage: (query: { limit: string; cursor?: string }) => Promise<Page<T>>,
  enabled = true,
) {
  const q = useInfiniteQuery({
    queryKey: ['admin', ...key],
    enabled,
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) => fetchPage({ limit: PAGE_SIZE, ...(pageParam ? { cursor: pageParam } : {}) }),
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  return {
    rows: q.data?.pages.flatMap((p) => p.data) ?? [],
    isPending: q.isPending && enabled,
    isError: q.isError,
    error: q.error,
    hasMore: q.hasNextPage,
    loadingMore: q.isFetchingNextPage,
    more: () => q.fetchNextPage(),
  };
}

/** Refetches every console query under `key` after a change. */
export function useInvalidate(): (...key: unknown[]) => Promise<void> {
  const qc = useQueryClient();
  return (...key) => qc.invalidateQueries({ queryKey: ['admin', ...key] });
}

/** "109.00" in SEK → 10900; null when it is not a non-negative amount with at most the currency's decimals. */
export function toMinor(text: string, currency: string): number | null {
  // NFKC: full-width digits and stops (１２．５０, typed with an East Asian input method) are digits.
  const normalised = text.normalize('NFKC').trim().replace(',', '.');
  if (!/^\d{1,12}(\.\d+)?$/.test(normalised)) return null;
  const [whole = '0', frac = ''] = normalised.split('.');
  const decimals = fractionDigits(currency);
  if (frac.length > decimals) return null;
  return Number(whole) * 10 ** decimals + Number(frac.padEnd(decimals, '0') || '0');
}

/** The JSON body a route answers with 200 or 201. */
export type Answer<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: infer R;
}
  ? R extends { 200: { content: { 'application/json': infer T } } }
    ? T
    : R extends { 201: { content: { 'application/json': infer T } } }
      ? T
      : never
  : never;
