// What the kernel says about processes (from /proc), for tests that must
// show a wrapper leaves no child behind: its children, and whether a pid is
// still a process at all (a zombie counts: nobody reaped it).
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** Kernel state letter: R, S, T (stopped), Z (zombie), ... */
  state: string;
  comm: string;
}

export function procInfo(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
  const close = stat.lastIndexOf(')');
  const [state, ppid] = stat.slice(close + 2).split(' ');
  return { pid, ppid: Number(ppid), state: state!, comm: stat.slice(stat.indexOf('(') + 1, close) };
}

/** Direct children of `pid`, zombies included. */
export function childrenOf(pid: number): ProcInfo[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map((d) => procInfo(Number(d)))
    .filter((p): p is ProcInfo => p?.ppid === pid);
}

/** True while `pid` exists in any state (including an unreaped zombie). */
export function exists(pid: number): boolean {
  return procInfo(pid) !== undefined;
}

/** Sends `signal` to a child (unless it has already exited); resolves with its exit code. */
export function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  return exited;
}
