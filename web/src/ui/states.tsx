import { Alert, Center, Container, Loader, Text, Title } from '@mantine/core';
import type { ReactNode } from 'react';

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <Center mih={200} role="status" aria-live="polite">
      <Loader size="sm" aria-hidden="true" />
      <Text ml="sm">{label}</Text>
    </Center>
  );
}

export function NotFound() {
  return (
    <Container size="sm" py="xl" component="main">
      <Title order={1}>Page not found</Title>
      <Text mt="md">There is nothing at this address.</Text>
    </Container>
  );
}

/** A page-level message (expired link, error): a heading and a sentence. */
export function PageMessage({
  title,
  children,
  tone = 'gray',
}: {
  title: string;
  children: ReactNode;
  tone?: string;
}) {
  return (
    <Container size="sm" py="xl" component="main">
      <Title order={1} mb="md">
        {title}
      </Title>
      <Alert color={tone} variant="light">
        {children}
      </Alert>
    </Container>
  );
}
