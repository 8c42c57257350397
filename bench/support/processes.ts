import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;

/** A product process the bench started (`node dist/cli/main.js …`), its log in a file. */
export interface BenchProcess {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  readonly logPath: string;
  /** Peak resident set size so far (VmHWM of /proc/<pid>/status), in bytes; null once exited. */
  peakRss(): number | null;
  /** CPU time used so far (user + system, /proc/<pid>/stat), in seconds; null once exited. */
  cpuSeconds(): number | null;
  /** The last lines of its log (for failures). */
  tail(lines?: number): string;
  /** SIGTERM and wait (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
  /** kill -9, and wait for the exit. */
  kill9(): Promise<void>;
}

/**
 * Starts `node dist/cli/main.js <args>` with `env` added to this process's environment, stdout and
 * stderr appended to `logPath`, and waits until `healthPath` answers 2xx (bounded).
 */
export async function startProduct(opts: {
  name: string;
  args: string[];
  port: number;
  env: Record<string, string>;
  logPath: string;
  healthPath: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}): Promise<BenchProcess> {
  installSignalHandlers();
  const out = openSync(opts.logPath, 'a');
  // BENCH_CPU_PROF=<dir>: each product process writes a V8 CPU profile there when it exits.
  const profile = process.env.BENCH_CPU_PROF
    ? [
        '--cpu-prof',
        `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`,
        `--cpu-prof-name=${opts.name}.cpuprofile`,
      ]
    : [];
  const child = spawn(process.execPath, [...profile, join(ROOT, 'dist/cli/main.js'), ...opts.args], {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', out, out],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const url = `http://127.0.0.1:${opts.port}`;
  const proc: BenchProcess = {
    name: opts.name,
    url,
    port: opts.port,
    child,
    logPath: opts.logPath,
    peakRss: () => vmHwm(child),
    cpuSeconds: () => cpuSeconds(child),
    tail: (lines = 30) => {
      try {
        return readFileSync(opts.logPath, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
    async stop(graceMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`${opts.name} exited with ${child.exitCode} during startup:\n${proc.tail()}`);
    try {
      const res = await fetch(`${url}${opts.healthPath}`, { headers: opts.headers ?? {} });
      if (res.ok) return proc;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await proc.kill9();
  throw new Error(`${opts.name} did not answer ${opts.healthPath} within the deadline:\n${proc.tail()}`);
}

/** Product processes still running: a bench interrupted (Ctrl-C, SIGTERM) stops them first. */
const live = new Set<ChildProcess>();
let handlersInstalled = false;
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const child of live) child.kill('SIGTERM');
      process.stderr.write(
        `\n  … ${signal}: stopped ${live.size} product process(es); their databases stay\n`,
      );
      process.exit(130);
    });
  }
}

/** VmHWM (peak RSS) of a live child from /proc, in bytes; null when it is gone or unreadable. */
export function vmHwm(child: ChildProcess): number | null {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return null;
  try {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const kb = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : null;
  } catch {
    return null;
  }
}

/** utime + stime of a live child from /proc/<pid>/stat (clock ticks of 1/100 s), in seconds. */
export function cpuSeconds(child: ChildProcess): number | null {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return null;
  try {
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}
