import { PageMessage } from '../ui/states';

/**
 * The admin console's pages (dashboard, catalog, customers, refunds, webhooks, test clocks) are
 * being built; the APIs they read (admin sessions, /v1/reports/dashboard, the customer timeline)
 * are in place. Until then this page says so.
 */
export default function AdminApp() {
  return (
    <PageMessage title="Admin console">
      The admin console is not in this build yet. Use the API (/docs) with your API key meanwhile.
    </PageMessage>
  );
}
