import { Alert, Button, Group, Modal, Stack, Text, TextInput } from '@mantine/core';
import { type FormEvent, useState } from 'react';
import { must } from '../api/client';
import { money } from '../ui/format';
import { type Answer, admin, minorPerMajor, toMinor, useInvalidate } from './admin-api';
import { FormError, useSave } from './forms';

type Payment = Answer<'/v1/payments/{id}', 'get'>;

/**
 * Refund a payment, fully or partly, in two steps: the amount (at most what is left to refund),
 * then a confirmation that says exactly what goes back to whom. One Idempotency-Key per
 * confirmation, so a double click refunds once.
 */
export function RefundModal({ payment, onClose }: { payment: Payment; onClose: () => void }) {
  const left = payment.amount - payment.amountRefunded;
  const factor = minorPerMajor(payment.currency);
  const [amount, setAmount] = useState(() => (left / factor).toFixed(Math.log10(factor)));
  const [step, setStep] = useState<'amount' | 'confirm'>('amount');
  const [input, setInput] = useState<string | null>(null);
  const [idempotencyKey] = useState(() => crypto.randomUUID());
  const [refunded, setRefunded] = useState<{ amount: number; status: string } | null>(null);
  const save = useSave();
  const invalidate = useInvalidate();
  const minor = toMinor(amount, payment.currency);

  function review(e: FormEvent) {
    e.preventDefault();
    if (minor === null || minor <= 0) {
      setInput(`Enter an amount above zero with at most ${Math.log10(factor)} decimals.`);
      return;
    }
    if (minor > left) {
      setInput(`At most ${money(left, payment.currency)} is left to refund.`);
      return;
    }
    setInput(null);
    setStep('confirm');
  }

  function confirm() {
    if (minor === null) return;
    void save.run(async () => {
      const refund = await must(
        admin.POST('/v1/refunds', {
          headers: { 'Idempotency-Key': idempotencyKey },
          body: { payment: payment.id, amount: minor },
        }),
      );
      setRefunded({ amount: refund.amount, status: refund.status });
      await invalidate('customer');
      await invalidate('dashboard');
    });
  }

  return (
    <Modal opened onClose={onClose} title="Refund payment" closeButtonProps={{ 'aria-label': 'Close' }}>
      {refunded ? (
        <Stack>
          <Alert color={refunded.status === 'failed' ? 'red' : 'teal'} variant="light" role="status">
            {refunded.status === 'failed'
              ? `The refund of ${money(refunded.amount, payment.currency)} failed at the provider.`
              : `Refund of ${money(refunded.amount, payment.currency)} ${refunded.status === 'succeeded' ? 'succeeded' : 'is pending'}.`}
          </Alert>
          <Group justify="flex-end">
            <Button onClick={onClose}>Done</Button>
          </Group>
        </Stack>
      ) : step === 'amount' ? (
        <form onSubmit={review} noValidate>
          <Stack>
            <Text size="sm">
              Payment {payment.id}: {money(payment.amount, payment.currency)}, of which{' '}
              {money(payment.amountRefunded, payment.currency)} already refunded.
            </Text>
            <TextInput
              label={`Amount to refund (${payment.currency})`}
              inputMode="decimal"
              required
              value={amount}
              onChange={(e) => setAmount(e.currentTarget.value)}
              error={input}
              data-autofocus
            />
            <Group justify="flex-end">
              <Button variant="default" onClick={onClose}>
                Cancel
              </Button>
              <Button type="submit">Review refund</Button>
            </Group>
          </Stack>
        </form>
      ) : (
        <Stack>
          <Text>
            Refund <strong>{money(minor ?? 0, payment.currency)}</strong> of payment {payment.id} to the
            customer's card? This cannot be undone.
          </Text>
          <FormError error={save.error} />
          <Group justify="flex-end">
            <Button variant="default" onClick={() => setStep('amount')} disabled={save.busy}>
              Back
            </Button>
            <Button color="red" onClick={confirm} loading={save.busy}>
              Confirm refund
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}
