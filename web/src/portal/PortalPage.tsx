import { Anchor, Container, Group, Stack, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useMemo } from 'react';
import { useParams } from 'react-router';
import { ApiError, apiClient, must, problemMessage } from '../api/client';
import { Loading, PageMessage } from '../ui/states';
import { InvoicesPanel } from './InvoicesPanel';
import { PaymentMethodPanel } from './PaymentMethodPanel';
import { Portal } from './portal-api';
import { SubscriptionCard } from './SubscriptionCard';

export default function PortalPage() {
  const { id = '' } = useParams();
  const secret = window.location.hash.slice(1);
  const client = useMemo(() => apiClient(secret), [secret]);
  const overview = useQuery({
    queryKey: ['portal', id, 'overview'],
    enabled: secret !== '',
    retry: false,
    queryFn: () => must(client.GET('/v1/portal-sessions/{id}/overview', { params: { path: { id } } })),
  });

  if (secret === '') {
    return <PageMessage title="Portal link incomplete">Open the full link you were given.</PageMessage>;
  }
  if (overview.isPending) return <Loading label="Loading your account…" />;
  if (overview.isError) {
    const status = overview.error instanceof ApiError ? overview.error.status : 0;
    return (
      <PageMessage title="Session ended" tone="red">
        {status === 401 || status === 404
          ? 'This link has expired or was signed out. Open your account page from the app again.'
          : problemMessage(overview.error)}
      </PageMessage>
    );
  }
  const o = overview.data;
  const locale = o.market.locale;
  return (
    <Portal.Provider value={{ id, client, locale }}>
      <Container size="md" py="xl" component="main">
        <Stack gap="lg">
          <Group justify="space-between" align="flex-end" wrap="wrap">
            <div>
              <Title order={1}>Your subscription</Title>
              <Text c="dimmed">{o.customer.name ?? o.customer.externalId}</Text>
            </div>
            {o.session.returnUrl ? <Anchor href={o.session.returnUrl}>Return to the app</Anchor> : null}
          </Group>
          {o.subscriptions.length === 0 ? <Text>You have no subscription.</Text> : null}
          {o.subscriptions.map((s) => (
            <SubscriptionCard key={s.id} subscription={s} />
          ))}
          <PaymentMethodPanel method={o.paymentMethod} provider={o.provider} />
          <InvoicesPanel market={o.market} />
        </Stack>
      </Container>
    </Portal.Provider>
  );
}
