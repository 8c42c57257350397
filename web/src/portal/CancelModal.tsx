import { Alert, Button, Group, Modal, Stack, Text } from '@mantine/core';
import { useState } from 'react';
import { must, problemMessage } from '../api/client';
import { date } from '../ui/format';
import { usePortal, useRefresh } from './portal-api';
import type { PortalSubscription } from './types';

/** Cancel at the end of the term, after a confirmation that says when access ends. */
export function CancelModal({
  subscription: s,
  onClose,
}: {
  subscription: PortalSubscription;
  onClose: () => void;
}) {
  const { id, client, locale } = usePortal();
  const refresh = useRefresh();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const endsAt = s.currentPeriodEnd;

  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await must(
        client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/cancel', {
          params: { path: { id, sub: s.id } },
          body: {},
        }),
      );
      await refresh();
      onClose();
    } catch (e) {
      setError(problemMessage(e));
      setBusy(false);
    }
  }

  return (
    <Modal opened onClose={onClose} title="Cancel subscription" closeButtonProps={{ 'aria-label': 'Close' }}>
      <Stack gap="md">
        <Text>
          Your subscription ends at the end of the current period. You keep access until{' '}
          <strong>{date(endsAt, locale)}</strong>, and you can undo the cancellation before then.
        </Text>
        {error ? (
          <Alert color="red" variant="light" role="alert">
            {error}
          </Alert>
        ) : null}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Keep subscription
          </Button>
          <Button color="red" onClick={confirm} loading={busy}>
            Confirm cancellation
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
