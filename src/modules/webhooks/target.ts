import { lookup } from 'node:dns/promises';
import { type Cidr, checkUrlShape, isIpLiteral, judgeAddress } from './domain/ssrf.js';

/** Every address a host name resolves to (`dns.lookup` with `all`); injectable for tests. */
export type Resolver = (host: string) => Promise<Array<{ address: string; family: number }>>;

export const systemResolver: Resolver = (host) => lookup(host, { all: true, verbatim: true });

/** Where one attempt connects: the URL, and the one address checked, which the socket is pinned to. */
export interface Target {
  url: URL;
  host: string;
  address: string;
  family: 4 | 6;
}

/** The URL may not be called: the reason names what was refused. */
export class TargetRefused extends Error {
  override name = 'TargetRefused';
}

/**
 * Checks `text` and every address its host resolves to (ADR 0019): all must be allowed, so a
 * name resolving to one public and one internal address is refused. Returns the first address,
 * to pin the connection to it (a second resolution by the HTTP client could answer otherwise:
 * DNS rebinding). Throws `TargetRefused`.
 */
export async function resolveTarget(
  text: string,
  allow: readonly Cidr[],
  resolve: Resolver,
): Promise<Target> {
  const shape = checkUrlShape(text);
  if (!shape.ok) throw new TargetRefused(shape.reason);
  const { url, host } = shape;
  let addresses: Array<{ address: string; family: number }>;
  if (isIpLiteral(host)) addresses = [{ address: host, family: host.includes(':') ? 6 : 4 }];
  else {
    try {
      addresses = await resolve(host);
    } catch (error) {
      throw new TargetRefused(
        `host '${host}' does not resolve (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    if (addresses.length === 0) throw new TargetRefused(`host '${host}' does not resolve`);
  }
  for (const a of addresses) {
    const verdict = judgeAddress(a.address, allow);
    if (!verdict.ok) throw new TargetRefused(`refused: ${verdict.reason}`);
  }
  const first = addresses[0]!;
  return { url, host, address: first.address, family: first.family === 6 ? 6 : 4 };
}
