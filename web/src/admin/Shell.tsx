import { Alert, AppShell, Burger, Button, Group, NavLink, Text, Title } from '@mantine/core';
import { useDisclosure, useMediaQuery } from '@mantine/hooks';
import { useQueryClient } from '@tanstack/react-query';
import { type KeyboardEvent, type ReactNode, useEffect, useRef, useState } from 'react';
import { Link, useLocation } from 'react-router';
import { problemMessage } from '../api/client';
import { MAIN_ID } from './AdminModal';
import { admin, useSession } from './admin-api';
import './admin.css';

const NAV = [
  { to: '/admin', label: 'Dashboard', exact: true },
  { to: '/admin/catalog', label: 'Catalog' },
  { to: '/admin/customers', label: 'Customers' },
  { to: '/admin/webhooks', label: 'Webhooks' },
  { to: '/admin/test-clocks', label: 'Test clocks' },
];

/** Below Mantine's `sm` breakpoint (48em) the navigation is a menu behind the burger button. */
const NARROW = '(max-width: 47.99em)';

/** The console's frame: a header with the menu button (narrow screens) and sign-out, the navigation, the page. */
export function Shell({ children }: { children: ReactNode }) {
  const [opened, { toggle, close }] = useDisclosure();
  const narrow = useMediaQuery(NARROW) ?? false;
  const burger = useRef<HTMLButtonElement>(null);
  const main = useRef<HTMLElement>(null);
  const { pathname } = useLocation();
  const session = useSession();
  const qc = useQueryClient();
  const [signingOut, setSigningOut] = useState(false);
  const [signOutError, setSignOutError] = useState<string | null>(null);

  async function signOut() {
    setSigningOut(true);
    setSignOutError(null);
    let ended = false;
    try {
      const { response, error } = await admin.DELETE('/v1/admin/sessions/current');
      // 204: ended now; 401: it had already ended. Anything else: the session is still open on
      // the server, so the console must not pretend it signed out.
      ended = response.ok || response.status === 401;
      if (!ended) {
        setSignOutError(
          `Not signed out: ${problemMessage(error, `the server answered ${response.status}`)} The session is still open; try again.`,
        );
      }
    } catch {
      setSignOutError(
        'Not signed out: the server could not be reached. The session is still open; try again.',
      );
    } finally {
      setSigningOut(false);
    }
    if (!ended) return;
    // Nothing the session read stays in memory once it ended; the sign-in form shows.
    qc.removeQueries({ queryKey: ['admin'] });
    qc.setQueryData(['admin-session'], null);
  }

  /** The phone menu closes on Escape (from the menu or its button) and gives focus back to its button. */
  function navKeyDown(e: KeyboardEvent) {
    if (e.key === 'Escape' && narrow && opened) {
      close();
      burger.current?.focus();
    }
  }

  return (
    <AppShell
      onKeyDown={navKeyDown}
      header={{ height: 56 }}
      navbar={{ width: 220, breakpoint: 'sm', collapsed: { mobile: !opened } }}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger
              ref={burger}
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
            <Button variant="outline" size="xs" onClick={signOut} loading={signingOut}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      {/* Collapsed off-screen on a phone: inert, so its links are neither tabbed to nor read out. */}
      <AppShell.Navbar p="xs" id="admin-nav" aria-label="Console" inert={narrow && !opened}>
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
              onClick={() => {
                if (!(narrow && opened)) return;
                // The menu closes over the page: focus goes to the page, not to a hidden link.
                close();
                requestAnimationFrame(() => main.current?.focus());
              }}
            />
          );
        })}
      </AppShell.Navbar>
      <AppShell.Main id={MAIN_ID} ref={main} tabIndex={-1} className="admin-main">
        {signOutError ? (
          <Alert
            color="red"
            variant="light"
            role="alert"
            mb="md"
            withCloseButton
            onClose={() => setSignOutError(null)}
            closeButtonLabel="Dismiss"
          >
            {signOutError}
          </Alert>
        ) : null}
        {children}
      </AppShell.Main>
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

/** A page whose data could not be read: its heading and the API's problem. */
export function PageError({ title, error }: { title: string; error: unknown }) {
  return (
    <>
      <PageTitle>{title}</PageTitle>
      <Alert color="red" role="alert">
        {problemMessage(error)}
      </Alert>
    </>
  );
}
