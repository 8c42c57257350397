import { Paper, Table, Text, Title } from '@mantine/core';
import { type ReactNode, useId } from 'react';
import { ScrollTable } from './Paged';

/**
 * A chart with an accessible name and its numbers as a table: the figure is labelled by its
 * heading, the drawing is hidden from assistive technology, and a "Show data" disclosure holds
 * the same figures as a table (what a screen reader, or a person copying them, reads).
 */
export function ChartFigure({
  title,
  description,
  children,
  columns,
  rows,
}: {
  title: string;
  description?: string;
  children: ReactNode;
  columns: string[];
  rows: ReactNode[][];
}) {
  const id = useId();
  return (
    <Paper withBorder p="md" component="figure" m={0} aria-labelledby={`${id}-title`}>
      <Title order={2} size="h4" id={`${id}-title`}>
        {title}
      </Title>
      {description ? (
        <Text size="sm" c="dimmed" component="figcaption">
          {description}
        </Text>
      ) : null}
      <div aria-hidden="true" style={{ width: '100%', height: 240, marginTop: 8 }}>
        {children}
      </div>
      <details>
        <summary>
          <Text span size="sm">
            Show data
          </Text>
        </summary>
        <ScrollTable label={title} minWidth={280}>
          <Table>
            <Table.Caption>{title}</Table.Caption>
            <Table.Thead>
              <Table.Tr>
                {columns.map((c) => (
                  <Table.Th key={c}>{c}</Table.Th>
                ))}
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {rows.map((r, i) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: rows are positional figures.
                <Table.Tr key={i}>
                  {r.map((cell, j) => (
                    // biome-ignore lint/suspicious/noArrayIndexKey: cells follow the columns.
                    <Table.Td key={j}>{cell}</Table.Td>
                  ))}
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </ScrollTable>
      </details>
    </Paper>
  );
}
