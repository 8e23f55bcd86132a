// Processes, CPU and memory of the benchmarked servers, from /proc.
import fs from 'node:fs';

export function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function commOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** A process and its descendants, optionally leaving out subtrees whose command is `skip` (kanidmd under the wrapper). */
export function tree(pid: number, skip?: string): number[] {
  const out = [pid];
  for (const c of childrenOf(pid)) if (commOf(c) !== skip) out.push(...tree(c, skip));
  return out;
}

/** CPU seconds (user + system) used so far by these processes. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const p of pids) {
    try {
      const fields = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      /* gone */
    }
  }
  return ticks / 100; // USER_HZ
}

export function rssMiB(pids: number[]): number {
  let kb = 0;
  for (const p of pids) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return kb / 1024;
}

/** A process's resident memory split as the kernel counts it: anonymous (heaps) and file-backed (the node binary's pages, libraries). */
export function rssSplitMiB(pid: number): { anon: number; file: number } {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { anon: kb('RssAnon') / 1024, file: kb('RssFile') / 1024 };
  } catch {
    return { anon: 0, file: 0 };
  }
}

/**
 * RSS once these processes have settled after start-up. V8's memory reducer
 * hands start-up garbage back once little is being allocated (the young
 * generation shrinks from its start-up size), in steps of 8 s after a full
 * collection: the wrapper's RSS sat flat for 15 s after it was ready, then
 * dropped by 6–9 MiB (sampled every second, 2026-11-26). So "idle" is the
 * level RSS stays at, not the first sample: sampled every 500 ms until it
 * has not dropped by more than 1 MiB for `quietMs` (longer than two of the
 * reducer's steps), at most `maxMs`.
 */
export async function settledRssMiB(pids: () => number[], quietMs = 20_000, maxMs = 60_000): Promise<number> {
  const start = Date.now();
  let low = rssMiB(pids());
  let lowSince = start;
  while (Date.now() - lowSince < quietMs && Date.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 500));
    const now = rssMiB(pids());
    if (now < low - 1) lowSince = Date.now();
    low = Math.min(low, now);
  }
  return low;
}
