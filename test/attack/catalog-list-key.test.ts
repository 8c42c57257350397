import { describe, expect, it } from 'vitest';
import { encodeCursor } from '../../src/http/pagination.js';
import { listKey } from '../../src/modules/catalog/routes.js';

/**
 * The catalog's rendered cache keys a list by what the query means. base64url decoding skips
 * characters outside its alphabet, so a cursor with junk in it names the same page: keyed raw,
 * every such spelling rendered anew and took an LRU slot (a caller with catalog:read could churn
 * the cache out with one page). Parts are JSON-encoded so none runs into the next.
 */
describe('catalog list cache key', () => {
  it('every spelling of one cursor is one key; distinct queries are distinct keys', () => {
    const cursor = encodeCursor('prod_01HZZZZZZZZZZZZZZZZZZZZZZZ');
    const junk = [`${cursor}....`, `${cursor.slice(0, 5)}!!!${cursor.slice(5)}`, `${cursor}==`, ` ${cursor}`];
    for (const j of junk) expect(listKey('products', 20, j)).toBe(listKey('products', 20, cursor));
    expect(listKey('products', 20, undefined)).toBe(listKey('products', 20, ''));
    expect(listKey('products', 20, cursor)).not.toBe(listKey('products', 21, cursor));
    expect(listKey('plans', 20, undefined, 'music')).not.toBe(listKey('plans', 20, undefined));
    expect(listKey('plans', 20, encodeCursor('a","b'), 'c')).not.toBe(
      listKey('plans', 20, encodeCursor('a'), 'b","c'),
    );
    expect(() => listKey('products', 20, 'not-a-cursor')).toThrow();
  });
});
