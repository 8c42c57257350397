import { Alert, Button, Group, Stack, Text, TextInput } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { type FormEvent, useRef, useState } from 'react';
import { ApiError, must } from '../api/client';
import { fractionDigits, money } from '../ui/format';
import { AdminModal } from './AdminModal';
import { type Answer, admin, toMinor, useInvalidate } from './admin-api';
import { FormError, useSave } from './forms';

type Payment = Answer<'/v1/payments/{id}', 'get'>;

/**
 * Refund a payment, fully or partly, in two steps: the amount (at most what is left to refund),
 * then a confirmation that says exactly what goes back to whom.
 *
 * One Idempotency-Key per amount: a double click, or a retry after no answer, sends the same key
 * and refunds once. A refusal (4xx: nothing was refunded, e.g. another tab refunded part of the
 * payment meanwhile) drops that amount's key, so a corrected or repeated amount is a new request
 * rather than a replay of the refusal or a 422 for a reused key.
 */
export function RefundModal({ payment: opened, onClose }: { payment: Payment; onClose: () => void }) {
  // What is left is read again when the dialog opens and after a refusal: the list may be stale.
  const fresh = useQuery({
    queryKey: ['admin', 'customer', 'payment', opened.id],
    queryFn: () => must(admin.GET('/v1/payments/{id}', { params: { path: { id: opened.id } } })),
    initialData: opened,
    refetchOnMount: 'always',
  });
  const payment = fresh.data;
  const left = payment.amount - payment.amountRefunded;
  const digits = fractionDigits(payment.currency);
  const [amount, setAmount] = useState(() => (left / 10 ** digits).toFixed(digits));
  const [step, setStep] = useState<'amount' | 'confirm'>('amount');
  const [input, setInput] = useState<string | null>(null);
  const keys = useRef(new Map<number, string>());
  const [refunded, setRefunded] = useState<{ amount: number; status: string } | null>(null);
  const save = useSave();
  const invalidate = useInvalidate();
  const minor = toMinor(amount, payment.currency);

  function review(e: FormEvent) {
    e.preventDefault();
    save.setError(null);
    if (minor === null || minor <= 0) {
      setInput(`Enter an amount above zero with at most ${digits} decimals.`);
      return;
    }
    if (minor > left) {
      setInput(`At most ${money(left, payment.currency)} is left to refund.`);
      return;
    }
    setInput(null);
    setStep('confirm');
  }

  function keyFor(value: number): string {
    let key = keys.current.get(value);
    if (!key) {
      key = crypto.randomUUID();
      keys.current.set(value, key);
    }
    return key;
  }

  function confirm() {
    if (minor === null) return;
    const value = minor;
    void save.run(async () => {
      try {
        const refund = await must(
          admin.POST('/v1/refunds', {
            headers: { 'Idempotency-Key': keyFor(value) },
            body: { payment: payment.id, amount: value },
          }),
        );
        setRefunded({ amount: refund.amount, status: refund.status });
      } catch (error) {
        if (!(error instanceof ApiError) || error.status < 400 || error.status >= 500) throw error;
        if (error.problem.code !== 'idempotency_key_in_use') keys.current.delete(value);
        const now = await fresh.refetch();
        const leftNow = now.data ? now.data.amount - now.data.amountRefunded : left;
        if (value > leftNow) {
          throw new Error(
            `Only ${money(leftNow, payment.currency)} is left to refund now (another refund was made meanwhile). Go back and change the amount.`,
          );
        }
        throw error;
      } finally {
        await invalidate('customer');
        await invalidate('dashboard');
      }
    });
  }

  return (
    <AdminModal onClose={onClose} title="Refund payment">
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
    </AdminModal>
  );
}
