import { ConfigError } from '../config.js';
import { invalid } from '../kernel/errors.js';

/** Characters a redirect URL may have at most. */
const REDIRECT_URL_MAX = 2_048;

/**
 * The origin this node's pages are served on (`REPRISE_PUBLIC_URL`, else `http://<host>:<port>`
 * once it listens), and the origins a hosted page may send a customer back to
 * (`REPRISE_ALLOWED_REDIRECT_ORIGINS`, else that origin alone). Hosted pages' URLs are built from
 * it, never from a request's Host header.
 */
export class PublicOrigin {
  readonly #configured: string | undefined;
  readonly #allowed: readonly string[] | undefined;
  #listening: string | undefined;

  constructor(publicUrl: string | undefined, allowedRedirectOrigins: string | undefined) {
    this.#configured = publicUrl === undefined ? undefined : originOf(publicUrl, 'REPRISE_PUBLIC_URL');
    this.#allowed =
      allowedRedirectOrigins === undefined
        ? undefined
        : allowedRedirectOrigins
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s !== '')
            .map((s) => originOf(s, 'REPRISE_ALLOWED_REDIRECT_ORIGINS'));
  }

  /** Called once the server listens: the default origin when none is configured. */
  listening(host: string, port: number): void {
    const h = host === '0.0.0.0' || host === '::' || host === '' ? 'localhost' : host;
    this.#listening = `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
  }

  /**
   * `REPRISE_PUBLIC_URL`'s origin, or undefined when it is not set: the origin browsers are known
   * to use (the console cookie's Secure flag and the CSRF check go by it), never a guess.
   */
  get configured(): string | undefined {
    return this.#configured;
  }

  /** `https://pay.example.com` — no trailing slash. */
  get origin(): string {
    return this.#configured ?? this.#listening ?? 'http://127.0.0.1';
  }

  get allowedRedirectOrigins(): readonly string[] {
    return this.#allowed ?? [this.origin];
  }

  /**
   * `value` as an absolute http(s) URL on an allowed origin, or a 400 naming `field`. No
   * credentials in it, no other scheme (javascript:, data:), no protocol-relative form.
   */
  checkRedirect(value: string, field: string): string {
    if (value.length > REDIRECT_URL_MAX) throw invalid(field, `at most ${REDIRECT_URL_MAX} characters`);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw invalid(field, 'must be an absolute URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid(field, 'must be http or https');
    if (url.username !== '' || url.password !== '') throw invalid(field, 'must not carry credentials');
    if (!this.allowedRedirectOrigins.includes(url.origin)) {
      throw invalid(
        field,
        `origin ${url.origin} is not allowed (REPRISE_ALLOWED_REDIRECT_ORIGINS: ${this.allowedRedirectOrigins.join(', ')})`,
      );
    }
    return url.href;
  }
}

function originOf(value: string, setting: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${setting}: '${value}' is not a URL (https://host[:port])`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new ConfigError(`${setting}: '${value}' must be http or https`);
  if (url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== ''))
    throw new ConfigError(`${setting}: '${value}' must be an origin (scheme, host, port), no path`);
  return url.origin;
}
