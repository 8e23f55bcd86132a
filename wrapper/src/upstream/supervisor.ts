// Runs `kanidmd server -c <config>` and keeps it healthy.
//
// - verifies the binary against its pin before every start
// - forwards its output, line by line and redacted, into the JSON log
// - probes GET /status every interval; not healthy within `timeout` -> restart
// - a healthy Kanidm that dies (kill -9, OOM) is restarted after the shortest
//   delay; one that dies before it ever became healthy (bad config, broken
//   database) backs off exponentially. Repeated exits are reported as a crash
//   loop (log + metric) until Kanidm is healthy again, never silently swallowed
// - exposes `healthy` so the proxy can answer 503 at once while it is down
// - never runs next to, or adopts, a kanidmd left by an earlier wrapper: it
//   records what it starts in a pid file and deals with leftovers before the
//   first start (see orphan.ts)
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { BatchedLog, redactLine } from '../telemetry/log.js';
import { probeStatus } from './health.js';
import { clearOrphans, identify, removePidFile, writePidFile, type ProcessIdentity } from './orphan.js';
import { verifyPinned } from './pin.js';

export interface SupervisorOptions {
  bin: string;
  config: string;
  upstreamAddr: string;
  dispatcher: Dispatcher;
  compatibilityFile: string | null; // null: skip the pin check (tests of other binaries only)
  intervalMs: number;
  timeoutMs: number;
  stopTimeoutMs?: number;
  /**
   * Where the running kanidmd is recorded (pid + start time), so the next
   * wrapper can stop one this wrapper left behind. null: no record (tests of
   * the supervision alone); leftovers are then only refused, never stopped.
   */
  pidFile?: string | null;
  /**
   * Runs before every start of kanidmd (first start and each restart), e.g. to compose the
   * config it runs with; an error fails that start.
   */
  prepare?: () => void;
  /** First restart delay, doubled per crash up to 30 s. Default 500 ms. */
  backoffMinMs?: number;
  log: Logger;
}

export type UpstreamState = 'stopped' | 'starting' | 'healthy' | 'unhealthy' | 'backoff';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const CRASH_LOOP_COUNT = 5;
const CRASH_LOOP_WINDOW_MS = 120_000;

export class Supervisor extends EventEmitter {
  state: UpstreamState = 'stopped';
  restarts = 0;
  crashLoop = false;
  private child: ResultPromise | null = null;
  private childIdentity: ProcessIdentity | null = null;
  private stopping = false;
  private readonly backoffMinMs: number;
  private backoffMs: number;
  private startedAt = 0;
  private recentExits: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastHealthy = 0;
  /** Kanidm logs several lines per request: they take the batched path (telemetry/log.ts). */
  private output: BatchedLog | null = null;

  constructor(private o: SupervisorOptions) {
    super();
    this.backoffMinMs = o.backoffMinMs ?? BACKOFF_MIN_MS;
    this.backoffMs = this.backoffMinMs;
  }

  /** Why the upstream is not ready, for /readyz. */
  get notReadyReason(): string {
    return this.crashLoop ? 'upstream crash-looping (see the log)' : `upstream not ready (${this.state})`;
  }

  get healthy(): boolean {
    return this.state === 'healthy';
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    this.stopping = false;
    await clearOrphans({
      pidFile: this.o.pidFile ?? null,
      bin: this.o.bin,
      config: this.o.config,
      upstreamAddr: this.o.upstreamAddr,
      stopTimeoutMs: this.stopTimeoutMs,
      log: this.o.log,
    });
    await this.spawn();
  }

  private get stopTimeoutMs(): number {
    return this.o.stopTimeoutMs ?? 10_000;
  }

  /** Resolves once healthy, rejects if the timeout passes first. */
  waitHealthy(timeoutMs = this.o.timeoutMs): Promise<void> {
    if (this.healthy) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('healthy', ok);
        reject(new Error(`upstream not healthy after ${timeoutMs} ms`));
      }, timeoutMs);
      const ok = () => {
        clearTimeout(t);
        resolve();
      };
      this.once('healthy', ok);
    });
  }

  private setState(s: UpstreamState) {
    if (s === this.state) return;
    const was = this.state;
    this.state = s;
    this.o.log.info({ from: was, to: s }, 'upstream state');
    this.emit('state', s);
    if (s === 'healthy') this.emit('healthy');
  }

  private async spawn(): Promise<void> {
    if (this.o.compatibilityFile) await verifyPinned(this.o.bin, this.o.compatibilityFile);
    this.o.prepare?.();
    this.setState('starting');
    this.startedAt = Date.now();
    const child = execa(this.o.bin, ['server', '-c', this.o.config], {
      reject: false,
      buffer: false,
      stdin: 'ignore',
      // Kanidm's own log level comes from server.toml; keep its env minimal.
      env: { RUST_BACKTRACE: '0' },
      extendEnv: true,
      forceKillAfterDelay: false,
    });
    this.child = child;
    this.childIdentity = child.pid === undefined ? null : identify(child.pid);
    this.record();
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        if (line.trim()) (this.output ??= new BatchedLog(this.o.log)).info({ upstream_line: redactLine(line) }, 'upstream output');
      });
    }
    this.o.log.info({ pid: child.pid, bin: this.o.bin }, 'upstream started');
    void child.then((r) => this.onExit(child, r.exitCode, r.signal));
    this.schedule(Math.min(200, this.o.intervalMs));
  }

  /** The pid file names the running child (see orphan.ts). */
  private record(): void {
    const self = identify(process.pid);
    if (!this.o.pidFile || !this.childIdentity || !self) return;
    try {
      writePidFile(this.o.pidFile, { wrapper: self, upstream: this.childIdentity, bin: this.o.bin, config: this.o.config });
    } catch (err) {
      // Supervision still works; only the clean-up after a hard kill of the
      // wrapper is lost, so say so loudly.
      this.o.log.error({ pid_file: this.o.pidFile, err_message: (err as Error).message }, 'cannot write the upstream pid file');
    }
  }

  private schedule(ms: number) {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopping || !this.child) return;
    const child = this.child;
    const ok = await probeStatus(this.o.upstreamAddr, this.o.dispatcher, Math.min(5_000, this.o.intervalMs * 2));
    if (this.stopping || child !== this.child) return;
    const now = Date.now();
    if (ok) {
      // Healthy again: the crash loop (if any) is over; the state change reports it.
      this.crashLoop = false;
      this.setState('healthy');
      this.lastHealthy = now;
    } else {
      if (this.state === 'healthy') this.setState('unhealthy');
      const since = Math.max(this.lastHealthy, this.startedAt);
      if (now - since > this.o.timeoutMs) {
        this.o.log.error({ timeout_ms: this.o.timeoutMs }, 'upstream not healthy within timeout; restarting');
        child.kill('SIGKILL');
        return; // onExit schedules the restart
      }
    }
    // Poll faster while starting so readiness is noticed quickly.
    this.schedule(this.state === 'healthy' ? this.o.intervalMs : Math.min(250, this.o.intervalMs));
  }

  private onExit(child: ResultPromise, code: number | undefined, signal: string | undefined) {
    if (child !== this.child) return;
    this.child = null;
    try {
      if (this.o.pidFile && this.childIdentity) removePidFile(this.o.pidFile, this.childIdentity);
    } catch (err) {
      this.o.log.warn({ pid_file: this.o.pidFile, err_message: (err as Error).message }, 'cannot remove the upstream pid file');
    }
    this.childIdentity = null;
    if (this.stopping) {
      this.setState('stopped');
      this.emit('stopped');
      return;
    }
    const now = Date.now();
    // It had come up: its start works, so bring it back at once (the service
    // is back after Kanidm's start time). Doubling is for starts that fail.
    if (this.lastHealthy >= this.startedAt) this.backoffMs = this.backoffMinMs;
    this.recentExits = [...this.recentExits.filter((t) => now - t < CRASH_LOOP_WINDOW_MS), now];
    this.crashLoop = this.recentExits.length >= CRASH_LOOP_COUNT;
    this.o.log.error(
      { code, signal, restart_in_ms: this.backoffMs, crash_loop: this.crashLoop },
      this.crashLoop ? 'upstream is crash-looping' : 'upstream exited unexpectedly',
    );
    this.setState('backoff');
    this.emit('exit', { code, signal });
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    setTimeout(() => {
      if (this.stopping) return;
      this.restarts++;
      this.emit('restart');
      // A failed spawn (e.g. the binary no longer matches its pin) is fatal:
      // the wrapper must not keep retrying something it refuses to run.
      this.spawn().catch((err) => {
        this.o.log.error({ err: String(err) }, 'upstream restart failed');
        this.setState('stopped');
        this.emit('fatal', err);
      });
    }, delay).unref();
  }

  /** SIGTERM, then SIGKILL after stopTimeoutMs. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child) {
      this.setState('stopped');
      return;
    }
    const done = new Promise<void>((r) => this.once('stopped', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), this.stopTimeoutMs);
    await done;
    clearTimeout(t);
  }
}
