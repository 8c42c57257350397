import { Alert, Button, Group, Table, Text } from '@mantine/core';
import type { ReactNode } from 'react';
import { problemMessage } from '../api/client';
import { Loading } from '../ui/states';

/**
 * A table that scrolls sideways on narrow screens: a named region that takes keyboard focus, so
 * its hidden columns can be reached without a mouse (axe: scrollable-region-focusable).
 */
export function ScrollTable({
  label,
  minWidth,
  children,
}: {
  label: string;
  minWidth: number;
  children: ReactNode;
}) {
  return (
    <Table.ScrollContainer minWidth={minWidth} type="native" tabIndex={0} role="region" aria-label={label}>
      {children}
    </Table.ScrollContainer>
  );
}

/**
 * A table of a paged API list: a caption naming it, a header, the rows so far and a
 * "Load more" button while the API has a next cursor.
 */
export function PagedTable<T>({
  caption,
  columns,
  list,
  row,
  empty,
  minWidth = 560,
}: {
  caption: string;
  columns: ReactNode[];
  list: {
    rows: T[];
    isPending: boolean;
    isError: boolean;
    error: unknown;
    hasMore: boolean;
    loadingMore: boolean;
    more: () => unknown;
  };
  row: (item: T) => ReactNode;
  empty: string;
  minWidth?: number;
}) {
  if (list.isPending) return <Loading />;
  return (
    <>
      {list.isError ? (
        <Alert color="red" variant="light" role="alert">
          {problemMessage(list.error)}
        </Alert>
      ) : null}
      {list.rows.length === 0 && !list.isError ? <Text c="dimmed">{empty}</Text> : null}
      {list.rows.length > 0 ? (
        <ScrollTable label={caption} minWidth={minWidth}>
          {/* Hover shade: teal text (links, badges, buttons) stays above 4.5:1 on it; Mantine's gray 1 is 4.49:1. */}
          <Table striped highlightOnHover highlightOnHoverColor="#f3f4f6">
            <Table.Caption>{caption}</Table.Caption>
            <Table.Thead>
              <Table.Tr>
                {columns.map((c, i) => (
                  // biome-ignore lint/suspicious/noArrayIndexKey: the columns are a fixed list.
                  <Table.Th key={i}>{c}</Table.Th>
                ))}
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>{list.rows.map(row)}</Table.Tbody>
          </Table>
        </ScrollTable>
      ) : null}
      {list.hasMore ? (
        <Group>
          <Button variant="default" loading={list.loadingMore} onClick={() => list.more()}>
            Load more
          </Button>
        </Group>
      ) : null}
    </>
  );
}
