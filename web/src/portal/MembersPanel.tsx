import { Alert, Button, Group, List, Stack, Text, TextInput, Title } from '@mantine/core';
import { type FormEvent, useState } from 'react';
import { must, problemMessage } from '../api/client';
import { usePortal, useRefresh } from './portal-api';
import type { PortalSubscription } from './types';

/** Family and duo members: who shares the plan, seats left, add and remove. */
export function MembersPanel({ subscription: s }: { subscription: PortalSubscription }) {
  const { id, client } = usePortal();
  const refresh = useRefresh();
  const [member, setMember] = useState('');
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const headingId = `members-${s.id}`;

  async function run(name: string, call: () => Promise<unknown>) {
    setBusy(name);
    setError(null);
    try {
      await call();
      await refresh();
      return true;
    } catch (e) {
      setError(problemMessage(e));
      return false;
    } finally {
      setBusy(null);
    }
  }

  async function add(e: FormEvent) {
    e.preventDefault();
    const externalId = member.trim();
    if (!externalId) return;
    const done = await run('add', () =>
      must(
        client.POST('/v1/portal-sessions/{id}/subscriptions/{sub}/members', {
          params: { path: { id, sub: s.id } },
          body: { externalId },
        }),
      ),
    );
    if (done) setMember('');
  }

  return (
    <Stack gap="xs" component="section" aria-labelledby={headingId}>
      <Title order={3} size="h5" id={headingId}>
        Members
      </Title>
      <Text size="sm">Seats left: {s.seatsLeft}</Text>
      {s.members.length > 0 ? (
        <List spacing={4} listStyleType="none" p={0}>
          {s.members.map((m) => (
            <List.Item key={m}>
              <Group gap="sm">
                <Text size="sm">{m}</Text>
                <Button
                  size="compact-xs"
                  variant="subtle"
                  color="red"
                  loading={busy === `remove:${m}`}
                  aria-label={`Remove ${m}`}
                  onClick={() =>
                    run(`remove:${m}`, () =>
                      must(
                        client.DELETE('/v1/portal-sessions/{id}/subscriptions/{sub}/members/{externalId}', {
                          params: { path: { id, sub: s.id, externalId: m } },
                        }),
                      ),
                    )
                  }
                >
                  Remove
                </Button>
              </Group>
            </List.Item>
          ))}
        </List>
      ) : (
        <Text size="sm" c="dimmed">
          No members yet.
        </Text>
      )}
      {s.seatsLeft > 0 ? (
        <form onSubmit={add}>
          <Group align="flex-end" gap="sm" wrap="wrap">
            <TextInput
              label="Member's account id"
              value={member}
              onChange={(e) => setMember(e.currentTarget.value)}
              maxLength={255}
            />
            <Button type="submit" loading={busy === 'add'} disabled={member.trim() === ''}>
              Add member
            </Button>
          </Group>
        </form>
      ) : null}
      {error ? (
        <Alert color="red" variant="light" role="alert">
          {error}
        </Alert>
      ) : null}
    </Stack>
  );
}
