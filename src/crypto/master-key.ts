import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKey } from './envelope.js';

/**
 * The master key comes from `REPRISE_MASTER_KEY`; without it, one is generated once into the data
 * directory (mode 0600) so the embedded default works with nothing to configure. Lose that file
 * and the personal data it protects is gone: back it up with the database, or set the variable.
 */
export function loadMasterKey(
  envValue: string | undefined,
  dataDir: string,
): { key: MasterKey; source: string } {
  if (envValue && envValue.trim() !== '')
    return { key: MasterKey.parse(envValue), source: 'REPRISE_MASTER_KEY' };
  const path = join(dataDir, 'master.key');
  if (existsSync(path)) return { key: MasterKey.parse(readFileSync(path, 'utf8')), source: path };
  mkdirSync(dataDir, { recursive: true });
  const key = MasterKey.generate();
  writeFileSync(path, `${key.toBase64()}\n`, { mode: 0o600, flag: 'wx' });
  return { key, source: path };
}
