// Child processes of the tests, found and ended for certain: a test that fails
// half-way must not leave its servers, wrappers or scripted upstreams running.
import { readdirSync, readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { identify, isAlive, type ProcessIdentity } from '../../../wrapper/src/upstream/orphan.js';
import { waitFor } from './wait.js';

/** Live processes whose command line contains `needle` (e.g. a test's unique temp dir). */
export function processesWith(needle: string): ProcessIdentity[] {
  const found: ProcessIdentity[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.split('\0').some((a) => a.includes(needle))) continue;
    const p = identify(Number(d));
    if (p) found.push(p);
  }
  return found;
}

/** SIGKILL to exactly this process (pid + start time), resolved once it is gone. */
export async function killAndWait(p: ProcessIdentity, what = `process ${p.pid}`): Promise<void> {
  if (!isAlive(p)) return;
  try {
    process.kill(p.pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
  await waitFor(() => !isAlive(p), { what: `${what} to exit after SIGKILL`, timeoutMs: 10_000 });
}

/** Ends every live process whose command line contains `needle`. */
export async function killAllWith(needle: string): Promise<void> {
  for (const p of processesWith(needle)) await killAndWait(p, `leftover process ${p.pid} (${needle})`);
}

/**
 * Ends a child we spawned: `signal` first, SIGKILL if it has not exited within
 * `graceMs`; resolves with its exit code once it has exited.
 */
export async function endChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<number | null> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}
