import { ActionIcon, Alert, Button, Group, List, Select, Stack, Text, TextInput } from '@mantine/core';
import { useState } from 'react';
import { ApiError, problemMessage } from '../api/client';
import { toMinor } from './admin-api';

/** The API's problem as an alert: its detail and each field it names. */
export function FormError({ error }: { error: unknown }) {
  if (!error) return null;
  const fields = error instanceof ApiError ? (error.problem.errors ?? []) : [];
  return (
    <Alert color="red" variant="light" role="alert" title="Not saved">
      <Text size="sm">{problemMessage(error instanceof ApiError ? error.problem : error)}</Text>
      {fields.length > 1 ? (
        <List size="sm" mt="xs">
          {fields.map((f) => (
            <List.Item key={`${f.path}:${f.message}`}>
              {f.path}: {f.message}
            </List.Item>
          ))}
        </List>
      ) : null}
    </Alert>
  );
}

/** The `<input type="datetime-local">` value of an instant, read as UTC ("2027-01-15T12:00"). */
export const toUtcInput = (iso: string) => iso.slice(0, 16);
/** An instant from a `datetime-local` value read as UTC (with or without seconds). */
export const fromUtcInput = (local: string) =>
  new Date(`${local.length === 16 ? `${local}:00` : local}Z`).toISOString();

/** A create dialog's foot: the API's refusal (if any), Cancel, and the submit button. */
export function DialogActions({
  save,
  onCancel,
  submit,
}: {
  save: { busy: boolean; error: unknown };
  onCancel: () => void;
  submit: string;
}) {
  return (
    <>
      <FormError error={save.error} />
      <Group justify="flex-end">
        <Button variant="default" onClick={onCancel}>
          Cancel
        </Button>
        <Button type="submit" loading={save.busy}>
          {submit}
        </Button>
      </Group>
    </>
  );
}

/** Runs a save: busy while it runs, its error kept for <FormError>, `onDone` after success. */
export function useSave() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return {
    busy,
    error,
    setError,
    async run(work: () => Promise<unknown>, onDone?: () => void) {
      setBusy(true);
      setError(null);
      try {
        await work();
        onDone?.();
      } catch (e) {
        setError(e);
      } finally {
        setBusy(false);
      }
    },
  };
}

export interface PriceRow {
  key: number;
  currency: string;
  amount: string;
  market: string;
}

let nextKey = 1;
export const newPriceRow = (currency = '', market = ''): PriceRow => ({
  key: nextKey++,
  currency,
  amount: '',
  market,
});

/**
 * Prices as the API takes them (minor units), or a message naming the first bad row. Amounts are
 * typed in major units ("109.00") and converted with the currency's own decimals (Intl).
 */
export function pricesOf(
  rows: PriceRow[],
): { prices: Array<{ currency: string; amount: number; market?: string }> } | { problem: string } {
  const prices: Array<{ currency: string; amount: number; market?: string }> = [];
  for (const [i, r] of rows.entries()) {
    const currency = r.currency.trim().toUpperCase();
    if (!/^[A-Z]{3}$/.test(currency))
      return { problem: `Price ${i + 1}: currency must be a 3-letter ISO code` };
    const amount = toMinor(r.amount, currency);
    if (amount === null) return { problem: `Price ${i + 1}: amount must be a number like 109.00` };
    prices.push({ currency, amount, ...(r.market.trim() ? { market: r.market.trim().toUpperCase() } : {}) });
  }
  if (prices.length === 0) return { problem: 'Add at least one price' };
  return { prices };
}

/** Editable price rows: currency, amount (major units), optional market. */
export function PriceRows({
  rows,
  onChange,
  markets,
}: {
  rows: PriceRow[];
  onChange: (rows: PriceRow[]) => void;
  markets: Array<{ code: string; currency: string }>;
}) {
  const set = (key: number, patch: Partial<PriceRow>) =>
    onChange(rows.map((r) => (r.key === key ? { ...r, ...patch } : r)));
  return (
    <Stack gap="xs">
      {rows.map((r, i) => (
        <Group key={r.key} gap="xs" align="flex-end" wrap="wrap">
          <TextInput
            label={`Currency ${i + 1}`}
            placeholder="SEK"
            w={90}
            maxLength={3}
            value={r.currency}
            onChange={(e) => set(r.key, { currency: e.currentTarget.value.toUpperCase() })}
          />
          <TextInput
            label={`Amount ${i + 1}`}
            placeholder="109.00"
            w={120}
            inputMode="decimal"
            value={r.amount}
            onChange={(e) => set(r.key, { amount: e.currentTarget.value })}
          />
          <Select
            label={`Market ${i + 1}`}
            placeholder="Any"
            w={120}
            clearable
            data={markets.map((m) => ({ value: m.code, label: `${m.code} (${m.currency})` }))}
            value={r.market || null}
            onChange={(v) => {
              const market = markets.find((m) => m.code === v);
              set(r.key, {
                market: v ?? '',
                ...(market && !r.currency ? { currency: market.currency } : {}),
              });
            }}
          />
          {rows.length > 1 ? (
            <ActionIcon
              variant="outline"
              color="red"
              aria-label={`Remove price ${i + 1}`}
              onClick={() => onChange(rows.filter((x) => x.key !== r.key))}
              mb={4}
            >
              ×
            </ActionIcon>
          ) : null}
        </Group>
      ))}
      <Group>
        <Button variant="outline" size="xs" onClick={() => onChange([...rows, newPriceRow()])}>
          Add price
        </Button>
      </Group>
    </Stack>
  );
}
