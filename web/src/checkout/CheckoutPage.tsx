import {
  Alert,
  Anchor,
  Badge,
  Box,
  Button,
  Container,
  Divider,
  Group,
  List,
  Paper,
  SimpleGrid,
  Stack,
  Text,
  Title,
} from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { type FormEvent, useCallback, useMemo, useRef, useState } from 'react';
import { useParams } from 'react-router';
import { ApiError, apiClient, problemMessage } from '../api/client';
import { CardFrame, type CardFrameHandle } from '../providers/CardFrame';
import { money, per, ratePercent } from '../ui/format';
import { Loading, PageMessage } from '../ui/states';

/** The tax note under a price: "incl. 25 % VAT" where prices include tax, "+ tax" where it is added. */
export function taxNote(market: { taxInclusive: boolean; taxRateBps: number }, locale: string): string {
  return market.taxInclusive ? `incl. ${ratePercent(market.taxRateBps, locale)} % VAT` : '+ tax';
}

const POLL_MS = 1_000;

export default function CheckoutPage() {
  const { id = '' } = useParams();
  const secret = window.location.hash.slice(1);
  const client = useMemo(() => apiClient(secret), [secret]);
  const card = useRef<CardFrameHandle>(null);
  const [frameReady, setFrameReady] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const onReady = useCallback(() => setFrameReady(true), []);

  const page = useQuery({
    queryKey: ['checkout-page', id],
    enabled: secret !== '',
    retry: false,
    queryFn: async () => {
      const { data, error, response } = await client.GET('/v1/checkout-sessions/{id}/page', {
        params: { path: { id } },
      });
      if (!data) throw new ApiError(response.status, (error ?? {}) as never);
      return data;
    },
  });

  if (secret === '') {
    return (
      <PageMessage title="Checkout link incomplete">
        Open the full link you were given to check out.
      </PageMessage>
    );
  }
  if (page.isPending) return <Loading label="Loading checkout…" />;
  if (page.isError) {
    const status = page.error instanceof ApiError ? page.error.status : 0;
    return (
      <PageMessage title="Checkout unavailable" tone="red">
        {status === 401 || status === 404
          ? 'This checkout link is not valid or has expired.'
          : problemMessage(page.error)}
      </PageMessage>
    );
  }
  const s = page.data;
  const locale = s.market.locale;
  if (s.status === 'expired') {
    return (
      <PageMessage title="Checkout expired">
        This checkout session has expired. Start again from the app.
      </PageMessage>
    );
  }
  if (s.status === 'complete') {
    return (
      <PageMessage title="Already subscribed" tone="teal">
        This checkout is complete. {s.successUrl ? <Anchor href={s.successUrl}>Continue</Anchor> : null}
      </PageMessage>
    );
  }

  const price = money(s.price.amount, s.price.currency, locale);

  async function confirm(token: string): Promise<void> {
    for (let i = 0; i < 30; i++) {
      const {
        data,
        error: problem,
        response,
      } = await client.POST('/v1/checkout-sessions/{id}/confirm', {
        params: { path: { id } },
        body: { token },
      });
      if (response.status === 200 && data && 'redirectUrl' in data) {
        window.location.assign(data.redirectUrl as string);
        return;
      }
      if (response.status === 202) {
        await new Promise((r) => setTimeout(r, POLL_MS));
        continue;
      }
      throw new ApiError(response.status, (problem ?? {}) as never);
    }
    throw new Error('The payment is still processing. Check back in a minute.');
  }

  async function onSubmit(e: FormEvent) {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const token = await card.current!.tokenize();
      await confirm(token.token);
    } catch (err) {
      setError(problemMessage(err instanceof ApiError ? err.problem : err));
      setBusy(false);
    }
  }

  return (
    <Container size="lg" py="xl" component="main">
      <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="xl">
        <Stack gap="sm">
          <Text c="dimmed" size="sm">
            Subscribe to
          </Text>
          <Title order={1}>{s.product.name}</Title>
          <Text size="lg" fw={500}>
            {s.plan.name}
          </Text>
          <Group gap="xs" align="baseline">
            <Text component="span" size="xl" fw={700} data-testid="price">
              {price}
            </Text>
            <Text component="span" c="dimmed">
              / {per(s.plan.billingPeriod)}
            </Text>
          </Group>
          <Text size="sm" data-testid="tax-note">
            {taxNote(s.market, locale)}
          </Text>
          {s.trialDays > 0 ? (
            <Box>
              <Badge color="teal" variant="outline" size="lg">
                {s.trialDays}-day free trial
              </Badge>
              <Text size="sm" mt="xs">
                Nothing to pay today. Then {price} / {per(s.plan.billingPeriod)} when the trial ends.
              </Text>
            </Box>
          ) : null}
          {s.product.features.length > 0 ? (
            <>
              <Divider my="sm" />
              <Text fw={500}>Included</Text>
              <List size="sm" spacing={4}>
                {s.product.features.map((f) => (
                  <List.Item key={f}>{f}</List.Item>
                ))}
              </List>
            </>
          ) : null}
        </Stack>
        <Paper withBorder p="lg" component="section" aria-labelledby="pay-heading">
          <form onSubmit={onSubmit} noValidate>
            <Stack gap="md">
              <Title order={2} size="h3" id="pay-heading">
                Payment details
              </Title>
              <Text size="sm" c="dimmed">
                Subscribing as {s.customer.externalId}
              </Text>
              <CardFrame ref={card} provider={s.provider} locale={locale} onReady={onReady} />
              {error ? (
                <Alert color="red" variant="light" role="alert" title="Payment failed">
                  {error}
                </Alert>
              ) : null}
              <Button type="submit" size="md" loading={busy} disabled={!frameReady} fullWidth>
                Subscribe
              </Button>
              {s.cancelUrl ? (
                <Anchor href={s.cancelUrl} size="sm" ta="center">
                  Cancel and go back
                </Anchor>
              ) : null}
              <Text size="xs" c="dimmed" ta="center">
                Card details are sent to the payment provider only.
              </Text>
            </Stack>
          </form>
        </Paper>
      </SimpleGrid>
    </Container>
  );
}
