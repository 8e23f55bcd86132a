// A kanidmd left behind by an earlier wrapper (the wrapper was killed with
// SIGKILL, OOM-killed, or crashed) keeps running, re-parented to PID 1, and
// keeps holding the upstream port and database. A new wrapper must neither
// start a second kanidmd next to it (it could not bind) nor probe it and take
// it for its own (a silent adoption of a process it cannot stop or restart).
//
// The supervisor records what it started in a pid file: the kanidmd's pid and
// its start time (field 22 of /proc/PID/stat), and the same for the wrapper
// itself. A pid alone is not enough: after a reboot or a long time the number
// belongs to some other process, and killing that would be a serious bug. A
// process is "ours" only when its pid, its start time and its command line
// (`BIN server -c CONFIG`) all match. Before the first start:
//
// - the wrapper recorded in the pid file is still alive -> refuse: another
//   `kiwi-id run` supervises this upstream;
// - the recorded kanidmd is alive and matches -> it is an orphan: stop it
//   (SIGTERM, then SIGKILL after the stop timeout) and wait until it is gone;
// - the record does not match a live process -> stale file, removed;
// - any other process runs `BIN server -c CONFIG` -> refuse, naming its pid
//   (not recorded, so not provably an orphan of ours: the operator decides);
// - something else listens on upstream_addr -> refuse, naming the address.
//
// Linux only (/proc), like the appliance. Node cannot set PR_SET_PDEATHSIG on
// its children, which would let the kernel end kanidmd with the wrapper; in
// the appliance systemd's cgroup does that (kiwi-id.service, KillMode=mixed).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { setTimeout as wait } from 'node:timers/promises';
import type { Logger } from 'pino';
import { urlHost } from '../config/url-host.js';

/** A process as the kernel knows it: the pid plus when it started (clock ticks after boot). */
export interface ProcessIdentity {
  pid: number;
  start: string;
}

export interface PidRecord {
  wrapper: ProcessIdentity;
  upstream: ProcessIdentity;
  bin: string;
  config: string;
}

/**
 * The start time of a live process, or null if there is none: gone, or a
 * zombie waiting to be reaped that holds no port and no file any more.
 */
export function processStart(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "PID (comm) STATE PPID ..." - comm may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if ((fields[0] === 'Z' || fields[0] === 'X') && !threadsStillExiting(pid)) return null;
  return fields[19] ?? null; // field 22 overall; fields[0] is field 3
}

/**
 * A multi-threaded process (kanidmd, node) whose main thread is already a
 * zombie can still have threads on their way out, and their shared file table
 * (sockets, database) is closed only by the last of them: until then it still
 * holds its port.
 */
function threadsStillExiting(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

export function identify(pid: number): ProcessIdentity | null {
  const start = processStart(pid);
  return start === null ? null : { pid, start };
}

/** True while exactly this process (same pid and start time) is alive. */
export function isAlive(p: ProcessIdentity): boolean {
  return processStart(p.pid) === p.start;
}

function argvOf(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return (raw.endsWith('\0') ? raw.slice(0, -1) : raw).split('\0');
  } catch {
    return null;
  }
}

/**
 * Whether `pid` runs `BIN server -c CONFIG` (as the supervisor starts it). BIN
 * is argv[0], or follows its interpreter when it is a script (#!).
 */
export function runsUpstream(pid: number, bin: string, config: string): boolean {
  const argv = argvOf(pid);
  if (!argv || argv.length < 4) return false;
  const [b, server, c, cfg] = argv.slice(-4);
  return b === bin && server === 'server' && c === '-c' && cfg === config;
}

export function readPidFile(file: string): PidRecord | null {
  if (!existsSync(file)) return null;
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as PidRecord;
    const ok = (p: ProcessIdentity | undefined) => Number.isInteger(p?.pid) && p!.pid > 0 && typeof p!.start === 'string';
    if (ok(r.wrapper) && ok(r.upstream) && typeof r.bin === 'string' && typeof r.config === 'string') return r;
  } catch {
    // unreadable or half-written: treated like a stale file
  }
  return null;
}

/** Written whole or not at all (temp file + rename), readable only by the service user. */
export function writePidFile(file: string, record: PidRecord): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(record) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

/** Removes the pid file if it still describes `upstream` (a newer record is left alone). */
export function removePidFile(file: string, upstream?: ProcessIdentity): void {
  const r = readPidFile(file);
  if (upstream && r && (r.upstream.pid !== upstream.pid || r.upstream.start !== upstream.start)) return;
  rmSync(file, { force: true });
}

/** Polls `cond` until true or `ms` passed; resolves with the last answer. */
async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await wait(25);
  }
}

/** Waits until `p` is gone, polling /proc (it is not our child: no exit event). */
function gone(p: ProcessIdentity, ms: number): Promise<boolean> {
  return until(() => !isAlive(p), ms);
}

function signal(p: ProcessIdentity, sig: NodeJS.Signals): void {
  // Checked right before signalling: never signal a recycled pid.
  if (!isAlive(p)) return;
  try {
    process.kill(p.pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** SIGTERM, SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(p: ProcessIdentity, graceMs: number): Promise<void> {
  signal(p, 'SIGTERM');
  if (await gone(p, graceMs)) return;
  signal(p, 'SIGKILL');
  if (!(await gone(p, 30_000))) throw new Error(`process ${p.pid} did not exit after SIGKILL`);
}

/** Live processes running `BIN server -c CONFIG`, other than `except`. */
export function findUpstreamProcesses(bin: string, config: string, except: number[] = []): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => !except.includes(pid) && runsUpstream(pid, bin, config) && processStart(pid) !== null);
}

/** Whether something accepts TCP connections on the host:port of `origin`. */
export function portInUse(origin: string, timeoutMs = 2_000): Promise<boolean> {
  const u = new URL(origin);
  const host = urlHost(u);
  const port = Number(u.port || 443);
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: timeoutMs });
    const done = (inUse: boolean) => {
      s.destroy();
      resolve(inUse);
    };
    s.once('connect', () => done(true));
    s.once('timeout', () => done(true)); // something holds the port but does not answer
    s.once('error', () => done(false));
  });
}

export class UpstreamConflict extends Error {}

export interface OrphanCheck {
  pidFile: string | null;
  bin: string;
  config: string;
  upstreamAddr: string;
  stopTimeoutMs: number;
  log: Logger;
}

/** What start-up does before the first kanidmd is spawned (see the top of this file). */
export async function clearOrphans(o: OrphanCheck): Promise<void> {
  const record = o.pidFile ? readPidFile(o.pidFile) : null;
  if (o.pidFile && record) {
    if (record.wrapper.pid !== process.pid && isAlive(record.wrapper)) {
      throw new UpstreamConflict(
        `${o.pidFile}: another kiwi-id (pid ${record.wrapper.pid}) is running and supervises kanidmd pid ${record.upstream.pid}; stop it before starting a second one`,
      );
    }
    // The record names how that kanidmd was started (its config may differ from this start's:
    // the cluster's run config, kanidm-run-config.ts).
    if (isAlive(record.upstream) && runsUpstream(record.upstream.pid, record.bin, record.config)) {
      o.log.warn(
        { pid: record.upstream.pid, pid_file: o.pidFile, stop_timeout_ms: o.stopTimeoutMs },
        'stopping the kanidmd left running by an earlier wrapper',
      );
      await stopProcess(record.upstream, o.stopTimeoutMs);
      // Its sockets close as it exits; give the kernel a moment to let go of
      // the port before the check below would call it taken.
      await until(async () => !(await portInUse(o.upstreamAddr)), o.stopTimeoutMs);
      o.log.info({ pid: record.upstream.pid }, 'earlier kanidmd stopped');
    } else {
      o.log.info({ pid: record.upstream.pid, pid_file: o.pidFile }, 'stale upstream pid file: that process is gone');
    }
    removePidFile(o.pidFile);
  } else if (o.pidFile && existsSync(o.pidFile)) {
    o.log.warn({ pid_file: o.pidFile }, 'unreadable upstream pid file removed');
    removePidFile(o.pidFile);
  }

  const strays = findUpstreamProcesses(o.bin, o.config, [process.pid]);
  if (strays.length > 0) {
    throw new UpstreamConflict(
      `kanidmd is already running with ${o.config} (pid ${strays.join(', ')}), but not as one this wrapper recorded` +
        (o.pidFile ? ` in ${o.pidFile}` : '') +
        `; refusing to start a second instance. Stop it (kill ${strays.join(' ')}) and start again`,
    );
  }
  if (await portInUse(o.upstreamAddr)) {
    const u = new URL(o.upstreamAddr);
    throw new UpstreamConflict(
      `upstream_addr ${u.host} is already in use by another process (not a kanidmd started by this wrapper); ` +
        `kanidmd could not bind it. Stop that process or move upstream_addr and Kanidm's bindaddress to a free port`,
    );
  }
}
