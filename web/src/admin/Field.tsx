import { Anchor, Text } from '@mantine/core';
import { Link } from 'react-router';

/** One fact on a detail page: a dimmed label over its value (a link when `href` is given). */
export function Field({ label, value, href }: { label: string; value: string; href?: string }) {
  return (
    <div>
      <Text size="sm" c="dimmed">
        {label}
      </Text>
      {href ? (
        <Anchor component={Link} to={href} style={{ overflowWrap: 'anywhere' }}>
          {value}
        </Anchor>
      ) : (
        <Text style={{ overflowWrap: 'anywhere' }}>{value}</Text>
      )}
    </div>
  );
}
