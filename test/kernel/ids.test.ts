import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/kernel/canonical-json.js';
import { isIdOf, newId } from '../../src/kernel/ids.js';

describe('ids', () => {
  it('are prefixed by kind and recognisable', () => {
    const id = newId('customer');
    expect(id).toMatch(/^cus_[0-9A-Z]{26}$/);
    expect(isIdOf('customer', id)).toBe(true);
    expect(isIdOf('plan', id)).toBe(false);
    expect(isIdOf('plan', 'premium-monthly')).toBe(false);
  });

  it('sort by creation time, also within one millisecond', () => {
    const ids = Array.from({ length: 1000 }, (_, i) =>
      newId('event', 1_700_000_000_000 + Math.floor(i / 100)),
    );
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(1000);
  });
});

describe('canonicalJson', () => {
  it('is independent of key order at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe(
      canonicalJson({ a: { c: null, d: [1, { y: 2, z: 1 }] }, b: 1 }),
    );
  });
  it('keeps array order and drops undefined members', () => {
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });
});
