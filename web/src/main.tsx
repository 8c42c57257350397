import '@mantine/core/styles.css';
import { createTheme, MantineProvider } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { lazy, StrictMode, Suspense } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter, Route, Routes } from 'react-router';
import { Loading, NotFound } from './ui/states';

// One bundle entry, three areas loaded on demand: a checkout page never downloads the console.
const CheckoutPage = lazy(() => import('./checkout/CheckoutPage'));
const CheckoutComplete = lazy(() => import('./checkout/CheckoutComplete'));
const PortalPage = lazy(() => import('./portal/PortalPage'));
const AdminApp = lazy(() => import('./admin/AdminApp'));

const theme = createTheme({ primaryColor: 'teal', defaultRadius: 'md' });
const queries = new QueryClient({ defaultOptions: { queries: { retry: 1, refetchOnWindowFocus: false } } });

const root = document.getElementById('root');
if (!root) throw new Error('#root missing');
createRoot(root).render(
  <StrictMode>
    <MantineProvider theme={theme}>
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
