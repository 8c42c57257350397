import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';

/**
 * Envelope encryption for personal data: each customer has a random 256-bit data key; the data
 * key is stored wrapped (AES-256-GCM) by the master key; fields are AES-256-GCM under the data key
 * with the customer id as associated data, so a ciphertext moved to another row does not decrypt.
 * Layout of every sealed value: version(1) | iv(12) | tag(16) | ciphertext.
 */
const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

export class MasterKey {
  readonly id: string;
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES)
      throw new RangeError(`master key must be ${KEY_BYTES} bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    // A fingerprint, not the key: lets a row say which master key wrapped it (for rotation).
    this.id = `mk_${createHash('sha256').update(this.#key).digest('hex').slice(0, 16)}`;
  }

  /** Accepts 32 bytes as base64 (44 chars) or hex (64 chars). */
  static parse(text: string): MasterKey {
    const trimmed = text.trim();
    const bytes = /^[0-9a-fA-F]{64}$/.test(trimmed)
      ? Buffer.from(trimmed, 'hex')
      : Buffer.from(trimmed, 'base64');
    return new MasterKey(bytes);
  }

  static generate(): MasterKey {
    return new MasterKey(randomBytes(KEY_BYTES));
  }

  wrap(dataKey: Buffer, context: string): Buffer {
    return seal(this.#key, dataKey, context);
  }

  unwrap(wrapped: Uint8Array, context: string): Buffer {
    return open(this.#key, wrapped, context);
  }

  /** A key for another purpose, derived one-way from the master key (HMAC-SHA256 of `label`). */
  derive(label: string): Buffer {
    return createHmac('sha256', this.#key).update(`reprise:${label}`).digest();
  }

  toBase64(): string {
    return this.#key.toString('base64');
  }
}

export function newDataKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

export function seal(key: Buffer, plaintext: Buffer | string, context: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([
    cipher.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext),
    cipher.final(),
  ]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]);
}

export function open(key: Buffer, sealed: Uint8Array, context: string): Buffer {
  const buf = Buffer.from(sealed);
  if (buf.length < 1 + IV_BYTES + TAG_BYTES || buf[0] !== VERSION) throw new Error('not a sealed value');
  const iv = buf.subarray(1, 1 + IV_BYTES);
  const tag = buf.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(buf.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
}
