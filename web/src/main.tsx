import '@mantine/core/styles.css';
import './ui/base.css';
import { type CSSVariablesResolver, createTheme, MantineProvider } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { lazy, StrictMode, Suspense } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter, Route, Routes } from 'react-router';
import { ApiError } from './api/client';
import { Loading, NotFound } from './ui/states';

// One bundle entry, three areas loaded on demand: a checkout page never downloads the console.
const CheckoutPage = lazy(() => import('./checkout/CheckoutPage'));
const CheckoutComplete = lazy(() => import('./checkout/CheckoutComplete'));
const PortalPage = lazy(() => import('./portal/PortalPage'));
const AdminApp = lazy(() => import('./admin/AdminApp'));

// Shade 9 keeps text, light badges and buttons above WCAG AA contrast on white (axe checks it).
const theme = createTheme({
  primaryColor: 'teal',
  primaryShade: { light: 9, dark: 6 },
  defaultRadius: 'md',
  autoContrast: true,
});
// "Dimmed" text in Mantine's default gray is 3.3:1 on white: a darker gray reaches 4.5:1+. A
// filled button's hover is a lighter shade (teal 8, 4.0:1 under white text): a darker teal instead.
const resolver: CSSVariablesResolver = () => ({
  variables: {},
  light: {
    '--mantine-color-dimmed': 'var(--mantine-color-gray-7)',
    '--mantine-primary-color-filled-hover': '#066649',
    '--mantine-color-teal-filled-hover': '#066649',
  },
  dark: {},
});
// One retry for a network error or a 5xx; a 4xx (not found, forbidden, session ended) is the
// answer, shown at once.
const queries = new QueryClient({
  defaultOptions: {
    queries: {
      retry: (failures, error) => failures < 1 && !(error instanceof ApiError && error.status < 500),
      refetchOnWindowFocus: false,
    },
  },
});

const root = document.getElementById('root');
if (!root) throw new Error('#root missing');
createRoot(root).render(
  <StrictMode>
    <MantineProvider theme={theme} cssVariablesResolver={resolver}>
      <QueryClientProvider client={queries}>
        <BrowserRouter>
          <Suspense fallback={<Loading />}>
            <Routes>
              <Route path="/checkout/:id" element={<CheckoutPage />} />
              <Route path="/checkout/:id/complete" element={<CheckoutComplete />} />
              <Route path="/portal/:id" element={<PortalPage />} />
              <Route path="/admin/*" element={<AdminApp />} />
              <Route path="*" element={<NotFound />} />
            </Routes>
          </Suspense>
        </BrowserRouter>
      </QueryClientProvider>
    </MantineProvider>
  </StrictMode>,
);
