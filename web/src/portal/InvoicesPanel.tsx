import { Alert, Badge, Button, Group, Paper, Stack, Table, Text, Title, VisuallyHidden } from '@mantine/core';
import { useInfiniteQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { must, problemMessage } from '../api/client';
import { date, money } from '../ui/format';
import { usePortal } from './portal-api';
import type { InvoiceRow, Market } from './types';

/** Downloads a PDF the page fetched with its session secret (a link could not carry it). */
export async function downloadPdf(url: string, secret: string, filename: string): Promise<void> {
  const res = await fetch(url, {
    headers: { authorization: `Bearer ${secret}` },
    credentials: 'same-origin',
  });
  if (!res.ok) throw new Error(`The PDF could not be made (${res.status}).`);
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

export function InvoicesPanel({ market }: { market: Market }) {
  const { id, client, locale } = usePortal();
  const [error, setError] = useState<string | null>(null);
  const invoices = useInfiniteQuery({
    queryKey: ['portal', id, 'invoices'],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      must(
        client.GET('/v1/portal-sessions/{id}/invoices', {
          params: { path: { id }, query: { limit: '10', ...(pageParam ? { cursor: pageParam } : {}) } },
        }),
      ),
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  const rows: InvoiceRow[] = invoices.data?.pages.flatMap((p) => p.data) ?? [];
  const secret = window.location.hash.slice(1);

  return (
    <Paper withBorder p="lg" component="section" aria-labelledby="invoices-heading">
      <Stack gap="sm">
        <Title order={2} size="h3" id="invoices-heading">
          Invoices
        </Title>
        {invoices.isError ? <Alert color="red">{problemMessage(invoices.error)}</Alert> : null}
        {rows.length === 0 && invoices.isSuccess ? <Text c="dimmed">No invoices yet.</Text> : null}
        {rows.length > 0 ? (
          <Table verticalSpacing="sm">
            <Table.Caption>Your invoices, newest first</Table.Caption>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Invoice</Table.Th>
                <Table.Th ta="right">Total</Table.Th>
                <Table.Th>
                  <VisuallyHidden>PDF</VisuallyHidden>
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {rows.map((inv) => (
                <Table.Tr key={inv.id}>
                  <Table.Td>
                    <Text span fw={500} style={{ overflowWrap: 'anywhere' }}>
                      {inv.number ?? '—'}
                    </Text>
                    <Text size="sm" c="dimmed">
                      {date(inv.createdAt, locale)}
                    </Text>
                  </Table.Td>
                  <Table.Td ta="right">
                    <Text span style={{ whiteSpace: 'nowrap' }}>
                      {money(inv.total, inv.currency ?? market.currency, locale)}
                    </Text>
                    <div>
                      <Badge variant="outline" size="sm" color={inv.status === 'paid' ? 'teal' : 'gray'}>
                        {inv.status}
                      </Badge>
                    </div>
                  </Table.Td>
                  <Table.Td ta="right">
                    {inv.number ? (
                      <Button
                        size="compact-sm"
                        variant="outline"
                        aria-label={`Download PDF of invoice ${inv.number}`}
                        onClick={() =>
                          downloadPdf(
                            `/v1/portal-sessions/${encodeURIComponent(id)}/invoices/${encodeURIComponent(inv.id)}/pdf`,
                            secret,
                            `${inv.number}.pdf`,
                          ).catch((e: unknown) => setError(problemMessage(e)))
                        }
                      >
                        PDF
                      </Button>
                    ) : null}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        ) : null}
        {error ? (
          <Alert color="red" variant="light" role="alert">
            {error}
          </Alert>
        ) : null}
        {invoices.hasNextPage ? (
          <Group>
            <Button
              variant="default"
              loading={invoices.isFetchingNextPage}
              onClick={() => invoices.fetchNextPage()}
            >
              Load more invoices
            </Button>
          </Group>
        ) : null}
      </Stack>
    </Paper>
  );
}
