import { useQuery, useQueryClient } from '@tanstack/react-query';
import { lazy, Suspense, useEffect, useState } from 'react';
import { Route, Routes } from 'react-router';
import { ApiError, problemMessage } from '../api/client';
import { Loading, NotFound, PageMessage } from '../ui/states';
import { type AdminSession, admin, onSessionEnded, Session } from './admin-api';
import { Shell } from './Shell';
import { SignIn } from './SignIn';

const Dashboard = lazy(() => import('./Dashboard'));
const Catalog = lazy(() => import('./Catalog'));
const PlanDetail = lazy(() => import('./PlanDetail'));
const Customers = lazy(() => import('./Customers'));
const CustomerDetail = lazy(() => import('./CustomerDetail'));
const Webhooks = lazy(() => import('./Webhooks'));
const WebhookDetail = lazy(() => import('./WebhookDetail'));
const TestClocks = lazy(() => import('./TestClocks'));

/** The session of this browser's cookie, or null when there is none (401). */
async function currentSession(): Promise<AdminSession | null> {
  const { data, response, error } = await admin.GET('/v1/admin/sessions/current');
  if (response.status === 401) return null;
  if (!response.ok || !data) throw new ApiError(response.status, (error ?? {}) as never);
  return data;
}

/**
 * The admin console at /admin: sign in with an API key (exchanged for an HttpOnly session cookie),
 * then the dashboard, catalog, customers, webhooks and test clocks.
 */
export default function AdminApp() {
  const qc = useQueryClient();
  const session = useQuery({ queryKey: ['admin-session'], queryFn: currentSession, retry: false });
  const [ended, setEnded] = useState(false);
  // A session that ends while the console is open (30 idle minutes, signed out elsewhere, key
  // revoked): what it read is dropped and the sign-in form shows, on the page the operator was on.
  useEffect(
    () =>
      onSessionEnded(() => {
        setEnded(true);
        qc.removeQueries({ queryKey: ['admin'] });
        qc.setQueryData(['admin-session'], null);
      }),
    [qc],
  );
  const signedIn = session.data != null;
  useEffect(() => {
    if (signedIn) setEnded(false);
  }, [signedIn]);
  if (session.isPending) return <Loading label="Loading the console…" />;
  if (session.isError) {
    return (
      <PageMessage title="Admin console" tone="red">
        {problemMessage(session.error)}
      </PageMessage>
    );
  }
  if (!session.data) return <SignIn notice={ended ? 'Your session ended. Sign in again to go on.' : null} />;
  return (
    <Session.Provider value={session.data}>
      <Shell>
        <Suspense fallback={<Loading />}>
          <Routes>
            <Route index element={<Dashboard />} />
            <Route path="catalog" element={<Catalog />} />
            <Route path="catalog/plans/:id" element={<PlanDetail />} />
            <Route path="customers" element={<Customers />} />
            <Route path="customers/:id" element={<CustomerDetail />} />
            <Route path="webhooks" element={<Webhooks />} />
            <Route path="webhooks/:id" element={<WebhookDetail />} />
            <Route path="test-clocks" element={<TestClocks />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </Suspense>
      </Shell>
    </Session.Provider>
  );
}
