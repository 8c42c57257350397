import { describe, expect, it } from 'vitest';
import { matchesEventType, parseEventTypes } from '../../src/modules/webhooks/domain/event-types.js';
import { afterFailure, DEFAULT_RETRY, shouldDisable } from '../../src/modules/webhooks/domain/retry.js';
import { signatureHeader } from '../../src/modules/webhooks/domain/signature.js';
import { checkUrlShape, judgeAddress, parseAllowCidrs } from '../../src/modules/webhooks/domain/ssrf.js';
import { type Resolver, resolveTarget } from '../../src/modules/webhooks/target.js';

const NONE = parseAllowCidrs('');
const LOOPBACK = parseAllowCidrs('127.0.0.0/8,::1/128');
const EVERYTHING_ALLOWABLE = parseAllowCidrs('0.0.0.0/0,::/0');
const noDns: Resolver = async (host) => {
  throw Object.assign(new Error(`no DNS in this test (${host})`), { code: 'ENOTFOUND' });
};
const refusal = async (url: string, allow = NONE, resolve: Resolver = noDns) => {
  try {
    await resolveTarget(url, allow, resolve);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
};

describe('SSRF: every spelling of a forbidden address is refused', () => {
  // Always refused, whatever REPRISE_WEBHOOK_ALLOW_CIDRS says.
  const always = [
    'http://169.254.169.254/latest/meta-data/',
    'http://2852039166/',
    'http://0xa9fea9fe/',
    'http://0251.0376.0251.0376/',
    'http://169.254.43518/',
    'http://[::ffff:a9fe:a9fe]/',
    'http://[::ffff:169.254.169.254]/',
    'http://[::169.254.169.254]/',
    'http://[64:ff9b::a9fe:a9fe]/',
    'http://[2002:a9fe:a9fe::1]/',
    'http://[2001:0:4136:e378:8000:63bf:5601:5601]/', // Teredo, client 169.254.169.254 (inverted)
    'http://[::ffff:0:a9fe:a9fe]/',
    'http://[fe80::1]/',
    'http://[fd00:ec2::254]/',
    'http://100.100.100.200/',
    'http://168.63.129.16/', // Azure WireServer: public unicast, refused as metadata
    'http://224.0.0.1/',
    'http://[ff02::1]/',
    'http://0.0.0.0/',
    'http://0/',
    'http://[::]/',
    'http://255.255.255.255/',
    'http://240.0.0.1/',
    'http://192.0.2.1/',
    'http://[2001:db8::1]/',
  ];
  for (const url of always) {
    it(`${url} is refused, even with every private range allowed`, async () => {
      expect(await refusal(url, NONE)).toMatch(/refused/);
      expect(await refusal(url, EVERYTHING_ALLOWABLE)).toMatch(/refused/);
    });
  }

  const allowable = [
    'http://127.0.0.1/',
    'http://2130706433/',
    'http://0x7f000001/',
    'http://017700000001/',
    'http://127.1/',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:7f00:1]/',
    'http://10.0.0.1/',
    'http://[::ffff:10.0.0.1]/',
    'http://[64:ff9b::10.0.0.1]/',
    'http://[2002:0a00:0001::]/',
    'http://172.16.5.4/',
    'http://192.168.1.1/',
    'http://100.64.0.1/',
    'http://[fd12:3456::1]/',
  ];
  for (const url of allowable) {
    it(`${url} is refused unless its range is allowed`, async () => {
      expect(await refusal(url, NONE)).toMatch(/not in REPRISE_WEBHOOK_ALLOW_CIDRS/);
      expect(await refusal(url, EVERYTHING_ALLOWABLE)).toBeUndefined();
    });
  }

  it('loopback allowed does not allow the private ranges', async () => {
    expect(await refusal('http://127.0.0.1:8080/hook', LOOPBACK)).toBeUndefined();
    expect(await refusal('http://[::1]:8080/hook', LOOPBACK)).toBeUndefined();
    expect(await refusal('http://10.0.0.1/', LOOPBACK)).toMatch(/private/);
    expect(await refusal('http://[fd12::1]/', LOOPBACK)).toMatch(/unique-local/);
  });

  it('a name is resolved and every address judged: one bad address refuses it', async () => {
    const dns =
      (answers: string[]): Resolver =>
      async () =>
        answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    expect(await refusal('https://hooks.example.com/x', NONE, dns(['93.184.215.14']))).toBeUndefined();
    expect(
      await refusal('https://hooks.example.com/x', NONE, dns(['93.184.215.14', '169.254.169.254'])),
    ).toMatch(/metadata/);
    expect(await refusal('http://localhost/', NONE, dns(['127.0.0.1', '::1']))).toMatch(/loopback/);
    expect(await refusal('http://localhost/', LOOPBACK, dns(['127.0.0.1', '::1']))).toBeUndefined();
    expect(await refusal('http://nowhere.invalid/', NONE)).toMatch(/does not resolve/);
    const target = await resolveTarget('https://hooks.example.com:8443/x?y=1', NONE, dns(['93.184.215.14']));
    expect(target).toMatchObject({ host: 'hooks.example.com', address: '93.184.215.14', family: 4 });
  });

  it('localhost through the system resolver is refused when loopback is not allowed', async () => {
    const { systemResolver } = await import('../../src/modules/webhooks/target.js');
    expect(await refusal('http://localhost/', NONE, systemResolver)).toMatch(/loopback/);
  });

  it('only http(s), no userinfo, bounded length', () => {
    expect(checkUrlShape('ftp://example.com/')).toMatchObject({ ok: false, reason: /http or https/ });
    expect(checkUrlShape('file:///etc/passwd')).toMatchObject({ ok: false });
    expect(checkUrlShape('gopher://example.com/')).toMatchObject({ ok: false });
    expect(checkUrlShape('http://user:pw@example.com/')).toMatchObject({ ok: false, reason: /user name/ });
    expect(checkUrlShape('http://user@example.com/')).toMatchObject({ ok: false });
    expect(checkUrlShape('/relative')).toMatchObject({ ok: false, reason: /absolute/ });
    expect(checkUrlShape(`https://example.com/${'a'.repeat(2048)}`)).toMatchObject({
      ok: false,
      reason: /2048/,
    });
    expect(checkUrlShape('https://example.com/hook')).toMatchObject({ ok: true, host: 'example.com' });
  });

  it('addresses: unicast passes, an allowed CIDR is matched by kind', () => {
    expect(judgeAddress('8.8.8.8', NONE).ok).toBe(true);
    expect(judgeAddress('2606:4700::1111', NONE).ok).toBe(true);
    expect(judgeAddress('::ffff:8.8.8.8', NONE).ok).toBe(true);
    expect(judgeAddress('10.1.2.3', parseAllowCidrs('10.1.0.0/16')).ok).toBe(true);
    expect(judgeAddress('10.2.2.3', parseAllowCidrs('10.1.0.0/16')).ok).toBe(false);
    expect(judgeAddress('169.254.169.254', parseAllowCidrs('169.254.0.0/16')).ok).toBe(false);
    expect(judgeAddress('not an address', NONE).ok).toBe(false);
  });

  it('REPRISE_WEBHOOK_ALLOW_CIDRS is validated', () => {
    expect(parseAllowCidrs(' 10.0.0.0/8 , fd00::/8 ')).toHaveLength(2);
    expect(() => parseAllowCidrs('10.0.0.1')).toThrow(/not a CIDR/);
    expect(() => parseAllowCidrs('10.0.0.0/33')).toThrow(/not a CIDR/);
    expect(() => parseAllowCidrs('example.com/8')).toThrow(/not a CIDR/);
  });
});

describe('event types of an endpoint', () => {
  it('types, groups and * are accepted; anything else names its entry', () => {
    expect(parseEventTypes(['subscription.*', 'invoice.paid', '*', 'invoice.paid'])).toEqual([
      'subscription.*',
      'invoice.paid',
      '*',
    ]);
    expect(() => parseEventTypes(['invoice.paid', 'invoice.nope'])).toThrow(/eventTypes\[1\]/);
    expect(() => parseEventTypes(['nope.*'])).toThrow(/eventTypes\[0\]/);
    expect(() => parseEventTypes([])).toThrow(/eventTypes/);
  });
  it('matching', () => {
    expect(matchesEventType(['subscription.*'], 'subscription.created')).toBe(true);
    expect(matchesEventType(['subscription.*'], 'invoice.paid')).toBe(false);
    expect(matchesEventType(['invoice.paid'], 'invoice.paid')).toBe(true);
    expect(matchesEventType(['*'], 'webhook_endpoint.disabled')).toBe(true);
  });
});

describe('retries', () => {
  const t0 = new Date('2030-01-01T00:00:00Z');
  const at = (ms: number) => new Date(t0.getTime() + ms);
  it('exponential backoff with full jitter, capped, within 3 days of the first attempt', () => {
    const next = (attempts: number, nowMs: number, random: number) =>
      afterFailure(DEFAULT_RETRY, { attempts, firstAttemptAt: t0, now: at(nowMs) }, random);
    expect(next(1, 0, 0.5)).toEqual({ status: 'pending', nextAttemptAt: at(15_000) });
    expect(next(2, 0, 0.5)).toEqual({ status: 'pending', nextAttemptAt: at(30_000) });
    expect(next(3, 0, 0.999)).toEqual({ status: 'pending', nextAttemptAt: at(120_000) });
    // Full jitter may draw 0: at least a second apart.
    expect(next(1, 0, 0)).toEqual({ status: 'pending', nextAttemptAt: at(1_000) });
    // Capped at 4 hours.
    expect(next(30, 0, 0.999)).toEqual({
      status: 'pending',
      nextAttemptAt: at(Math.ceil(0.999 * 4 * 3_600) * 1000),
    });
    // The last try is at the window's end, then failed.
    const day = 24 * 3_600_000;
    expect(next(40, 3 * day - 60_000, 0.9)).toEqual({ status: 'pending', nextAttemptAt: at(3 * day) });
    expect(next(41, 3 * day, 0.9)).toEqual({ status: 'failed' });
  });
  it('an endpoint failing for 3 days is disabled', () => {
    expect(shouldDisable(null, at(10 * 24 * 3_600_000))).toBe(false);
    expect(shouldDisable(t0, at(3 * 24 * 3_600_000 - 1))).toBe(false);
    expect(shouldDisable(t0, at(3 * 24 * 3_600_000))).toBe(true);
  });
});

describe('signature', () => {
  it('t=<seconds>,v1=<hex HMAC-SHA256 of "t.body"> keyed with the secret string, one v1 per secret', () => {
    // Checked against an independent computation (openssl dgst -sha256 -hmac whsec_test).
    const header = signatureHeader(1700000000, '{"a":1}', ['whsec_test', 'whsec_old']);
    const parts = header.split(',');
    expect(parts[0]).toBe('t=1700000000');
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe('v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789');
  });
});
