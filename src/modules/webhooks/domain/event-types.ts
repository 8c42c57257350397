import { type EventType, parseTypeFilter } from '../../../events/types.js';
import { DomainError, type FieldError } from '../../../kernel/errors.js';

/** Entries of an endpoint's `eventTypes` at most. */
export const EVENT_TYPES_MAX = 50;

/**
 * Checks an endpoint's `eventTypes`: 1 to 50 entries, each an event type, a group (`invoice.*`)
 * or `*` (everything). Returns them without duplicates, in order. A bad entry is a 400 naming
 * `eventTypes[i]`.
 */
export function parseEventTypes(values: readonly string[]): string[] {
  const errors: FieldError[] = [];
  if (values.length < 1 || values.length > EVENT_TYPES_MAX)
    errors.push({ path: 'eventTypes', in: 'body', message: `must list 1 to ${EVENT_TYPES_MAX} event types` });
  values.forEach((value, i) => {
    if (value === '*') return;
    try {
      parseTypeFilter(value);
    } catch {
      errors.push({
        path: `eventTypes[${i}]`,
        in: 'body',
        message: `'${value}' is not an event type, a group such as 'subscription.*', or '*'`,
      });
    }
  });
  if (errors.length > 0)
    throw new DomainError('validation_failed', errors.map((e) => `${e.path}: ${e.message}`).join('; '), {
      errors,
    });
  return [...new Set(values)];
}

/** Whether an endpoint subscribed to `filters` receives an event of `type`. */
export function matchesEventType(filters: readonly string[], type: EventType | string): boolean {
  const dot = type.indexOf('.');
  const group = dot < 0 ? type : `${type.slice(0, dot)}.*`;
  return filters.some((f) => f === '*' || f === type || f === group);
}
