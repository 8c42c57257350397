import { Alert, Button, Container, Paper, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useEffect, useState } from 'react';
import { problemMessage } from '../api/client';
import { admin } from './admin-api';

/**
 * Sign in with an API key: the server answers with an HttpOnly, SameSite=Strict session cookie.
 * The key lives only in this form's state, never in browser storage, and is cleared once sent.
 */
export function SignIn({ notice = null }: { notice?: string | null }) {
  const qc = useQueryClient();
  const [apiKey, setApiKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    document.title = 'Sign in · Reprise admin';
  }, []);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (apiKey.trim() === '') {
      setError('Enter an API key.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const { response, error: problem } = await admin.POST('/v1/admin/sessions', {
        body: { apiKey: apiKey.trim() },
      });
      if (!response.ok) {
        setError(
          response.status === 401
            ? 'That API key is unknown or revoked.'
            : problemMessage(problem, `Sign-in failed (${response.status}).`),
        );
        return;
      }
    } catch {
      // No answer at all (offline, the server down): say so rather than spin for ever.
      setError('The server could not be reached. Check the connection and try again.');
      return;
    } finally {
      setBusy(false);
    }
    setApiKey('');
    await qc.invalidateQueries({ queryKey: ['admin-session'] });
  }

  return (
    <Container size={420} py="xl" component="main">
      <Title order={1} mb="xs">
        Reprise admin
      </Title>
      <Text c="dimmed" mb="lg">
        Sign in with an API key. The console keeps a server session (12 hours at most, 30 idle minutes); the
        key is not stored in this browser.
      </Text>
      {notice ? (
        <Alert color="blue" variant="light" role="status" mb="md">
          {notice}
        </Alert>
      ) : null}
      <Paper withBorder p="lg" component="form" onSubmit={submit} noValidate aria-label="Sign in">
        <Stack>
          <PasswordInput
            label="API key"
            name="apiKey"
            autoComplete="off"
            required
            value={apiKey}
            onChange={(e) => setApiKey(e.currentTarget.value)}
            error={error ? true : undefined}
            aria-describedby={error ? 'sign-in-error' : undefined}
          />
          {error ? (
            <Alert color="red" variant="light" role="alert" id="sign-in-error">
              {error}
            </Alert>
          ) : null}
          <Button type="submit" loading={busy}>
            Sign in
          </Button>
        </Stack>
      </Paper>
    </Container>
  );
}
