import { AppShell, Burger, Button, Group, NavLink, Text, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { useQueryClient } from '@tanstack/react-query';
import { type ReactNode, useEffect } from 'react';
import { Link, useLocation } from 'react-router';
import { admin, useSession } from './admin-api';
import './admin.css';

const NAV = [
  { to: '/admin', label: 'Dashboard', exact: true },
  { to: '/admin/catalog', label: 'Catalog' },
  { to: '/admin/customers', label: 'Customers' },
  { to: '/admin/webhooks', label: 'Webhooks' },
  { to: '/admin/test-clocks', label: 'Test clocks' },
];

/** The console's frame: a header with the menu button (narrow screens) and sign-out, the navigation, the page. */
export function Shell({ children }: { children: ReactNode }) {
  const [opened, { toggle, close }] = useDisclosure();
  const { pathname } = useLocation();
  const session = useSession();
  const qc = useQueryClient();

  async function signOut() {
    await admin.DELETE('/v1/admin/sessions/current');
    // Nothing the session read stays in memory once it ended; the sign-in form shows.
    qc.removeQueries({ queryKey: ['admin'] });
    qc.setQueryData(['admin-session'], null);
  }

  return (
    <AppShell
      header={{ height: 56 }}
      navbar={{ width: 220, breakpoint: 'sm', collapsed: { mobile: !opened } }}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger
              opened={opened}
              onClick={toggle}
              hiddenFrom="sm"
              size="sm"
              aria-label={opened ? 'Close navigation' : 'Open navigation'}
              aria-expanded={opened}
              aria-controls="admin-nav"
            />
            <Text fw={700} component="span">
              Reprise admin
            </Text>
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Text size="sm" c="dimmed" visibleFrom="sm">
              Key {session.keyId}
            </Text>
            <Button variant="outline" size="xs" onClick={signOut}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" id="admin-nav" aria-label="Console">
        {NAV.map((n) => {
          const active = n.exact ? pathname === n.to || pathname === `${n.to}/` : pathname.startsWith(n.to);
          return (
            <NavLink
              key={n.to}
              component={Link}
              to={n.to}
              label={n.label}
              active={active}
              variant="filled"
              className="admin-nav"
              aria-current={active ? 'page' : undefined}
              onClick={close}
            />
          );
        })}
      </AppShell.Navbar>
      <AppShell.Main>{children}</AppShell.Main>
    </AppShell>
  );
}

/** A page's heading (h1) and its document title. */
export function PageTitle({ children, actions }: { children: string; actions?: ReactNode }) {
  useEffect(() => {
    document.title = `${children} · Reprise admin`;
  }, [children]);
  return (
    <Group justify="space-between" align="center" mb="md" wrap="wrap">
      <Title order={1}>{children}</Title>
      {actions}
    </Group>
  );
}
