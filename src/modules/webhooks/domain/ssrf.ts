import ipaddr from 'ipaddr.js';

/**
 * Where a webhook may be sent (ADR 0019), as pure rules: the URL's shape, then every address its
 * host resolves to. An address inside IPv6 (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4,
 * Teredo) is judged by the IPv4 address it carries, so no spelling reaches what its IPv4 form
 * could not. The resolution itself (and pinning the connection to the address judged) is I/O:
 * `target.ts`.
 */

export type Verdict = { ok: true } | { ok: false; reason: string };

/** A CIDR of `REPRISE_WEBHOOK_ALLOW_CIDRS`: private, CGNAT, unique-local or loopback targets allowed there. */
export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

export const URL_LENGTH_MAX = 2048;

/** Cloud metadata services: refused even when a CIDR around them is allowed. */
// AWS/GCP/Azure IMDS, AWS's IPv6 IMDS, Alibaba's, and Azure's platform endpoint (WireServer).
const METADATA = new Set(['169.254.169.254', 'fd00:ec2::254', '100.100.100.200', '168.63.129.16']);

/** Ranges allowed only when an allowed CIDR covers the address; every other non-unicast range is refused. */
const ALLOWABLE_V4 = new Set(['loopback', 'private', 'carrierGradeNat']);
const ALLOWABLE_V6 = new Set(['loopback', 'uniqueLocal']);

/**
 * Parses `REPRISE_WEBHOOK_ALLOW_CIDRS` (comma-separated CIDRs, e.g. `127.0.0.0/8,::1/128`).
 * Throws an Error naming the bad entry.
 */
export function parseAllowCidrs(text: string): Cidr[] {
  const out: Cidr[] = [];
  for (const raw of text.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    if (!part.includes('/')) throw new Error(`'${part}' is not a CIDR (address/prefix, e.g. 10.0.0.0/8)`);
    try {
      out.push(ipaddr.parseCIDR(part));
    } catch {
      throw new Error(`'${part}' is not a CIDR (address/prefix, e.g. 10.0.0.0/8)`);
    }
  }
  return out;
}

/** The URL's shape: http(s), no userinfo, a host. Returns the parsed URL or why it is refused. */
export function checkUrlShape(
  text: string,
): { ok: true; url: URL; host: string } | { ok: false; reason: string } {
  if (text.length > URL_LENGTH_MAX)
    return { ok: false, reason: `is longer than ${URL_LENGTH_MAX} characters` };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, reason: 'is not an absolute URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, reason: `must be http or https, not ${url.protocol.replace(/:$/, '')}` };
  if (url.username !== '' || url.password !== '')
    return { ok: false, reason: 'must not carry a user name or password' };
  // IPv6 literals come bracketed; the WHATWG parser has already turned decimal, hex and octal
  // IPv4 spellings into the dotted form.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') return { ok: false, reason: 'has no host' };
  return { ok: true, url, host };
}

/** True when `host` is an IP literal (as `checkUrlShape` returns it), not a name to resolve. */
export function isIpLiteral(host: string): boolean {
  return ipaddr.isValid(host) && (host.includes(':') || ipaddr.IPv4.isValidFourPartDecimal(host));
}

/** Whether a webhook may connect to `address` (a resolved or literal IP address). */
export function judgeAddress(address: string, allow: readonly Cidr[]): Verdict {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return { ok: false, reason: `'${address}' is not an IP address` };
  }
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6;
    const inner = embeddedIPv4(v6);
    if (inner.length > 0) {
      for (const v4 of inner) {
        const verdict = judgeV4(v4, allow);
        if (!verdict.ok) return { ok: false, reason: `${verdict.reason} (inside ${address})` };
      }
      return { ok: true };
    }
    return judgeV6(v6, allow);
  }
  return judgeV4(parsed as ipaddr.IPv4, allow);
}

function judgeV4(a: ipaddr.IPv4, allow: readonly Cidr[]): Verdict {
  const text = a.toString();
  if (METADATA.has(text)) return { ok: false, reason: `${text} is a cloud metadata address` };
  const range = a.range();
  if (range === 'unicast') return { ok: true };
  if (ALLOWABLE_V4.has(range)) {
    if (allow.some(([net, bits]) => net.kind() === 'ipv4' && a.match(net as ipaddr.IPv4, bits)))
      return { ok: true };
    return { ok: false, reason: `${text} is ${describe(range)} and not in REPRISE_WEBHOOK_ALLOW_CIDRS` };
  }
  return { ok: false, reason: `${text} is ${describe(range)}` };
}

function judgeV6(a: ipaddr.IPv6, allow: readonly Cidr[]): Verdict {
  const text = a.toRFC5952String();
  if (METADATA.has(text)) return { ok: false, reason: `${text} is a cloud metadata address` };
  const range = a.range();
  if (range === 'unicast') return { ok: true };
  if (ALLOWABLE_V6.has(range)) {
    if (allow.some(([net, bits]) => net.kind() === 'ipv6' && a.match(net as ipaddr.IPv6, bits)))
      return { ok: true };
    return { ok: false, reason: `${text} is ${describe(range)} and not in REPRISE_WEBHOOK_ALLOW_CIDRS` };
  }
  return { ok: false, reason: `${text} is ${describe(range)}` };
}

const v4Of = (hi: number, lo: number): ipaddr.IPv4 =>
  new ipaddr.IPv4([(hi >> 8) & 0xff, hi & 0xff, (lo >> 8) & 0xff, lo & 0xff]);

/**
 * The IPv4 addresses an IPv6 address carries, if it is one of the forms that reach an IPv4 host:
 * IPv4-mapped (::ffff:0:0/96), SIIT (::ffff:0:0:0/96), IPv4-compatible (::/96 but :: and ::1),
 * NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32: server and client).
 */
export function embeddedIPv4(a: ipaddr.IPv6): ipaddr.IPv4[] {
  const p = a.parts;
  const range = a.range();
  if (range === 'ipv4Mapped' || range === 'rfc6145' || range === 'rfc6052') return [v4Of(p[6]!, p[7]!)];
  if (range === '6to4') return [v4Of(p[1]!, p[2]!)];
  if (range === 'teredo') return [v4Of(p[2]!, p[3]!), v4Of(~p[6]! & 0xffff, ~p[7]! & 0xffff)];
  const zero96 = p.slice(0, 6).every((x) => x === 0);
  if (zero96 && !(p[6] === 0 && (p[7] === 0 || p[7] === 1))) return [v4Of(p[6]!, p[7]!)];
  return [];
}

function describe(range: string): string {
  switch (range) {
    case 'unspecified':
      return 'the unspecified address';
    case 'broadcast':
      return 'the broadcast address';
    case 'linkLocal':
      return 'link-local';
    case 'multicast':
      return 'multicast';
    case 'loopback':
      return 'loopback';
    case 'private':
      return 'a private address';
    case 'carrierGradeNat':
      return 'a carrier-grade NAT address';
    case 'uniqueLocal':
      return 'a unique-local address';
    default:
      return `reserved (${range})`;
  }
}
