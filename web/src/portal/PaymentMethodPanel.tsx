import { Alert, Button, Group, Paper, Stack, Text, Title } from '@mantine/core';
import { type FormEvent, useCallback, useRef, useState } from 'react';
import { ApiError, must, problemMessage } from '../api/client';
import { CardFrame, type CardFrameHandle } from '../providers/CardFrame';
import type { ProviderInfo } from '../providers/card';
import { usePortal, useRefresh } from './portal-api';

/** The default card, and replacing it through the provider's card frame. */
export function PaymentMethodPanel({
  method,
  provider,
}: {
  method: { id: string; brand: string; last4: string } | null;
  provider: ProviderInfo;
}) {
  const { id, client, locale } = usePortal();
  const refresh = useRefresh();
  const card = useRef<CardFrameHandle>(null);
  const [editing, setEditing] = useState(false);
  const [ready, setReady] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const onReady = useCallback(() => setReady(true), []);

  async function save(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const t = await card.current!.tokenize();
      await must(
        client.POST('/v1/portal-sessions/{id}/payment-methods', {
          params: { path: { id } },
          body: { token: t.token },
        }),
      );
      await refresh();
      setEditing(false);
      setSaved(true);
    } catch (err) {
      setError(problemMessage(err instanceof ApiError ? err.problem : err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Paper withBorder p="lg" component="section" aria-labelledby="payment-heading">
      <Stack gap="sm">
        <Title order={2} size="h3" id="payment-heading">
          Payment method
        </Title>
        <Text>{method ? `${method.brand.toUpperCase()} •••• ${method.last4}` : 'No card on file.'}</Text>
        {saved ? (
          <Text size="sm" c="teal.9" role="status">
            Card saved.
          </Text>
        ) : null}
        {editing ? (
          <form onSubmit={save} noValidate>
            <Stack gap="sm">
              <CardFrame ref={card} provider={provider} locale={locale} onReady={onReady} />
              {error ? (
                <Alert color="red" variant="light" role="alert">
                  {error}
                </Alert>
              ) : null}
              <Group gap="sm">
                <Button type="submit" loading={busy} disabled={!ready}>
                  Save card
                </Button>
                <Button variant="default" onClick={() => setEditing(false)}>
                  Cancel
                </Button>
              </Group>
            </Stack>
          </form>
        ) : (
          <Group>
            <Button
              variant="outline"
              onClick={() => {
                setSaved(false);
                setEditing(true);
              }}
            >
              Update payment method
            </Button>
          </Group>
        )}
      </Stack>
    </Paper>
  );
}
