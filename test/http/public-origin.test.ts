import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { PublicOrigin } from '../../src/http/public-origin.js';
import { DomainError } from '../../src/kernel/errors.js';

function refusal(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error('accepted');
}

describe('public origin and redirect checks', () => {
  it('defaults to the listening address, and only it is an allowed redirect origin', () => {
    const o = new PublicOrigin(undefined, undefined);
    o.listening('0.0.0.0', 3000);
    expect(o.origin).toBe('http://localhost:3000');
    expect(o.checkRedirect('http://localhost:3000/thanks?x=1', 'successUrl')).toBe(
      'http://localhost:3000/thanks?x=1',
    );
    const e = refusal(() => o.checkRedirect('http://localhost:3001/', 'successUrl'));
    expect(e.code).toBe('validation_failed');
    expect(e.errors[0]).toMatchObject({ path: 'successUrl', in: 'body' });
  });

  it('refuses other schemes, credentials, relative and look-alike origins in every spelling', () => {
    const o = new PublicOrigin(
      'https://shop.example.com',
      'https://shop.example.com,https://app.example.com:8443',
    );
    for (const bad of [
      'javascript:alert(1)',
      'data:text/html,hi',
      '//evil.example/x',
      '/relative',
      'https://shop.example.com@evil.example/',
      'https://user:pw@shop.example.com/',
      'https://shop.example.com.evil.example/',
      'http://shop.example.com/',
      'https://app.example.com/',
      `https://shop.example.com/${'a'.repeat(3000)}`,
    ]) {
      expect(refusal(() => o.checkRedirect(bad, 'returnUrl')).errors[0]?.path, bad).toBe('returnUrl');
    }
    expect(o.checkRedirect('HTTPS://SHOP.example.com:443/ok', 'returnUrl')).toBe(
      'https://shop.example.com/ok',
    );
    expect(o.checkRedirect('https://app.example.com:8443/a', 'cancelUrl')).toBe(
      'https://app.example.com:8443/a',
    );
  });

  it('refuses settings that are not origins', () => {
    expect(() => new PublicOrigin('https://x.example/path', undefined)).toThrow(ConfigError);
    expect(() => new PublicOrigin('ftp://x.example', undefined)).toThrow(ConfigError);
    expect(() => new PublicOrigin(undefined, 'https://ok.example, nope')).toThrow(ConfigError);
  });
});
