import { Anchor, Badge, Button, Group, Paper, Stack, Table, TextInput } from '@mantine/core';
import { type FormEvent, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { must } from '../api/client';
import { date } from '../ui/format';
import { admin, usePaged } from './admin-api';
import { PagedTable } from './Paged';
import { PageTitle } from './Shell';

/** Customers, newest pages first as the API lists them; a search by external id narrows it to one. */
export default function Customers() {
  const [params, setParams] = useSearchParams();
  const externalId = params.get('externalId') ?? '';
  const [text, setText] = useState(externalId);
  const list = usePaged(['customers', 'list', externalId], (query) =>
    must(
      admin.GET('/v1/customers', {
        params: { query: { ...query, ...(externalId ? { externalId } : {}) } },
      }),
    ),
  );

  function search(e: FormEvent) {
    e.preventDefault();
    const value = text.trim();
    setParams(value ? { externalId: value } : {});
  }

  return (
    <Stack>
      <PageTitle>Customers</PageTitle>
      <Paper withBorder p="md" component="form" role="search" onSubmit={search} aria-label="Find a customer">
        <Group align="flex-end" wrap="wrap">
          <TextInput
            label="External id"
            description="The id your app knows the customer by"
            value={text}
            maxLength={255}
            onChange={(e) => setText(e.currentTarget.value)}
            style={{ flex: '1 1 220px' }}
          />
          <Button type="submit">Search</Button>
          {externalId ? (
            <Button
              variant="default"
              onClick={() => {
                setText('');
                setParams({});
              }}
            >
              Show all
            </Button>
          ) : null}
        </Group>
      </Paper>
      <PagedTable
        caption={externalId ? `Customers with external id ${externalId}` : 'Customers'}
        columns={['External id', 'Name', 'Email', 'Market', 'Created']}
        list={list}
        empty={externalId ? `No customer has the external id ${externalId}.` : 'No customers yet.'}
        row={(c) => (
          <Table.Tr key={c.id}>
            <Table.Td>
              <Anchor component={Link} to={`/admin/customers/${encodeURIComponent(c.id)}`}>
                {c.externalId}
              </Anchor>
              {c.testClock ? (
                <Badge ml="xs" variant="outline" color="grape" size="sm">
                  test clock
                </Badge>
              ) : null}
              {c.erased ? (
                <Badge ml="xs" variant="outline" color="gray" size="sm">
                  erased
                </Badge>
              ) : null}
            </Table.Td>
            <Table.Td>{c.name ?? '—'}</Table.Td>
            <Table.Td>{c.email ?? '—'}</Table.Td>
            <Table.Td>{c.market}</Table.Td>
            <Table.Td>{date(c.createdAt)}</Table.Td>
          </Table.Tr>
        )}
      />
    </Stack>
  );
}
