#!/usr/bin/env node
// Makes `npm start` and `npm test` work on a fresh clone with nothing but Node and npm:
// installs dependencies when they are missing or the lock file changed (npm ci), and with
// --build compiles TypeScript when dist/ is missing or older than any source file.
// Only Node built-ins here: this runs before node_modules exists.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stampPath = join(root, 'node_modules', '.reprise-lock-sha256');
const buildStamp = join(root, 'dist', '.build-stamp');

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  console.error(`Reprise needs Node.js >= 20.19; this is ${process.versions.node}.`);
  process.exit(1);
}

function run(cmd, args) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const lock = readFileSync(join(root, 'package-lock.json'));
const lockHash = createHash('sha256').update(lock).digest('hex');
const installed = existsSync(stampPath) ? readFileSync(stampPath, 'utf8').trim() : '';
if (installed !== lockHash) {
  console.error('Installing dependencies (npm ci)…');
  run('npm', ['ci', '--no-audit', '--no-fund']);
  writeFileSync(stampPath, `${lockHash}\n`);
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

if (process.argv.includes('--build')) {
  const sources = Math.max(
    newestMtime(join(root, 'src')),
    newestMtime(join(root, 'web')),
    statSync(join(root, 'package-lock.json')).mtimeMs,
  );
  const built = existsSync(buildStamp) ? statSync(buildStamp).mtimeMs : 0;
  if (built < sources) {
    console.error('Building (tsc, and the web pages with vite)…');
    run(process.execPath, [join(root, 'scripts', 'build.mjs')]);
  }
}
