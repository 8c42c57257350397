import { Alert, Anchor, Badge, Button, Code, Group, Stack, Table, Text, TextInput } from '@mantine/core';
import { type FormEvent, useState } from 'react';
import { Link } from 'react-router';
import { must } from '../api/client';
import { date } from '../ui/format';
import { AdminModal } from './AdminModal';
import { admin, useInvalidate, usePaged } from './admin-api';
import { DialogActions, useSave } from './forms';
import { PagedTable } from './Paged';
import { PageTitle } from './Shell';

/** Webhook endpoints: list, create (the signing secret is shown once), open one for its deliveries. */
export default function Webhooks() {
  const [creating, setCreating] = useState(false);
  const list = usePaged(['webhooks'], (query) =>
    must(admin.GET('/v1/webhook-endpoints', { params: { query } })),
  );
  return (
    <Stack>
      <PageTitle actions={<Button onClick={() => setCreating(true)}>New endpoint</Button>}>
        Webhooks
      </PageTitle>
      <PagedTable
        caption="Webhook endpoints"
        columns={['URL', 'Events', 'Status', 'Created']}
        list={list}
        empty="No webhook endpoints yet."
        row={(w) => (
          <Table.Tr key={w.id}>
            <Table.Td style={{ overflowWrap: 'anywhere' }}>
              <Anchor component={Link} to={`/admin/webhooks/${encodeURIComponent(w.id)}`}>
                {w.url}
              </Anchor>
              {w.description ? (
                <Text size="xs" c="dimmed">
                  {w.description}
                </Text>
              ) : null}
            </Table.Td>
            <Table.Td>{w.eventTypes.join(', ')}</Table.Td>
            <Table.Td>
              <Badge variant="outline" color={w.status === 'enabled' ? 'teal' : 'red'}>
                {w.status === 'enabled' ? 'enabled' : `disabled (${w.disabledReason ?? 'requested'})`}
              </Badge>
            </Table.Td>
            <Table.Td>{date(w.createdAt)}</Table.Td>
          </Table.Tr>
        )}
      />
      {creating ? <NewEndpoint onClose={() => setCreating(false)} /> : null}
    </Stack>
  );
}

function NewEndpoint({ onClose }: { onClose: () => void }) {
  const invalidate = useInvalidate();
  const save = useSave();
  const [url, setUrl] = useState('');
  const [types, setTypes] = useState('*');
  const [description, setDescription] = useState('');
  const [secret, setSecret] = useState<string | null>(null);

  function submit(e: FormEvent) {
    e.preventDefault();
    void save.run(async () => {
      const created = await must(
        admin.POST('/v1/webhook-endpoints', {
          body: {
            url: url.trim(),
            eventTypes: types
              .split(',')
              .map((t) => t.trim())
              .filter((t) => t !== ''),
            ...(description.trim() ? { description: description.trim() } : {}),
          },
        }),
      );
      setSecret(created.secret ?? '');
      await invalidate('webhooks');
    });
  }

  return (
    <AdminModal onClose={onClose} title="New webhook endpoint">
      {secret !== null ? (
        <Stack>
          <Alert color="teal" variant="light" role="status" title="Endpoint created">
            Copy its signing secret now: it is not shown again.
          </Alert>
          <Code
            block
            style={{ overflowWrap: 'anywhere', whiteSpace: 'pre-wrap' }}
            aria-label="Signing secret"
          >
            {secret}
          </Code>
          <Group justify="flex-end">
            <Button onClick={onClose}>Done</Button>
          </Group>
        </Stack>
      ) : (
        <form onSubmit={submit} noValidate>
          <Stack>
            <TextInput
              label="URL"
              type="url"
              required
              placeholder="https://example.com/hooks/reprise"
              value={url}
              onChange={(e) => setUrl(e.currentTarget.value)}
            />
            <TextInput
              label="Event types"
              description="Comma-separated: a type (invoice.paid), a group (subscription.*) or *"
              required
              value={types}
              onChange={(e) => setTypes(e.currentTarget.value)}
            />
            <TextInput
              label="Description"
              value={description}
              onChange={(e) => setDescription(e.currentTarget.value)}
            />
            <DialogActions save={save} onCancel={onClose} submit="Create endpoint" />
          </Stack>
        </form>
      )}
    </AdminModal>
  );
}
