import { describe, expect, it } from 'vitest';
import { exactJson } from '../../src/kernel/exact-json.js';

describe('exactJson', () => {
  it('writes bigints past 2^53 as exact integer literals', () => {
    const big = 2n ** 53n + 1n; // 9007199254740993: a JS number would round it to ...992
    expect(exactJson({ sum: big, neg: -big })).toBe('{"sum":9007199254740993,"neg":-9007199254740993}');
    expect(exactJson([10n ** 30n])).toBe('[1000000000000000000000000000000]');
  });
  it('writes safe bigints as plain numbers and everything else as JSON.stringify does', () => {
    const value = { a: 5n, b: 'text', c: [1, null, true], d: { e: 1.5 } };
    expect(exactJson(value)).toBe(JSON.stringify({ ...value, a: 5 }));
  });
  it('cannot be forged by a string that looks like its marker', () => {
    const text = exactJson({ s: '0:0', t: 2n ** 60n, u: '"x:0"' });
    expect(JSON.parse(text.replace(String(2n ** 60n), '0'))).toEqual({ s: '0:0', t: 0, u: '"x:0"' });
    expect(text).toContain(`"t":${2n ** 60n}`);
  });
});
