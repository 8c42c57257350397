import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Target } from './target.js';

/** Bytes of an endpoint's answer read at most (then discarded): it is never stored. */
export const RESPONSE_BYTES_MAX = 64 * 1024;
/** Characters of an error kept on the delivery. */
export const ERROR_LENGTH_MAX = 500;

export interface SendResult {
  /** 2xx: delivered. */
  ok: boolean;
  status: number | null;
  error: string | null;
}

/**
 * POSTs `body` to the target, connected to the address that was checked (the `lookup` option
 * answers it, so nothing resolves the name again; TLS still uses the host name for SNI and the
 * certificate). Redirects are not followed (a 3xx is a failure). The whole attempt is bounded by
 * `timeoutMs`; the answer's body is read up to RESPONSE_BYTES_MAX and discarded. Never throws.
 */
export function send(
  target: Target,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<SendResult> {
  return new Promise<SendResult>((resolve) => {
    let settled = false;
    const finish = (result: SendResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const pinned: LookupFunction = (_hostname, options, callback) => {
      if ((options as { all?: boolean }).all)
        (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [
          { address: target.address, family: target.family },
        ]);
      else callback(null, target.address, target.family);
    };
    const isHttps = target.url.protocol === 'https:';
    const payload = Buffer.from(body, 'utf8');
    const request = (isHttps ? https : http).request(
      {
        method: 'POST',
        protocol: target.url.protocol,
        hostname: target.host,
        port: target.url.port === '' ? undefined : Number(target.url.port),
        path: `${target.url.pathname}${target.url.search}`,
        headers: { ...headers, 'Content-Length': String(payload.length) },
        lookup: pinned,
        agent: false,
        ...(isHttps ? { servername: isIpAddressLike(target.host) ? undefined : target.host } : {}),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        let read = 0;
        const done = () =>
          finish({
            ok: status >= 200 && status < 300,
            status,
            error: status >= 200 && status < 300 ? null : `answered ${status}`,
          });
        response.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > RESPONSE_BYTES_MAX) {
            // Enough: the status is what counts.
            done();
            response.destroy();
          }
        });
        response.on('end', done);
        response.on('error', done);
        response.on('close', done);
      },
    );
    const timer = setTimeout(() => {
      finish({ ok: false, status: null, error: `no answer within ${timeoutMs} ms` });
      request.destroy(new Error('timeout'));
    }, timeoutMs);
    request.on('error', (error: NodeJS.ErrnoException) =>
      finish({ ok: false, status: null, error: (error.code ?? error.message).slice(0, ERROR_LENGTH_MAX) }),
    );
    request.end(payload);
  });
}

function isIpAddressLike(host: string): boolean {
  return host.includes(':') || /^[0-9.]+$/.test(host);
}
