// The primary of `kiwi-id run` with `workers` > 1 (messages.ts says who does
// what): it starts Kanidm's supervisor and the state store's upkeep, forks the
// workers and keeps them supplied: Kanidm's health, /metrics for all, orders
// to reload the certificate or to drain, and a new worker for one that died.
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { KiwiConfig } from '../../config/config.js';
import { loadOrCreateCookieKeys } from '../../oidc/cookie-keys.js';
import { SqliteStateStore } from '../../state/store.js';
import { createLogger } from '../../telemetry/log.js';
import { createMetrics, type Metrics } from '../../telemetry/metrics.js';
import { verifyPinned } from '../../upstream/pin.js';
import type { Supervisor } from '../../upstream/supervisor.js';
import type { Running } from '../running.js';
import { createSupervisor, keepState } from '../upkeep.js';
import { isMessage, type Message } from './messages.js';
import { MetricsAggregation } from './metrics.js';

const RESPAWN_DELAY_MS = 1_000;
/** Past the workers' own drain deadline, a worker still running is killed. */
const DRAIN_GRACE_MS = 5_000;

/** The primary's side of its workers: orders out, answers in, a dead worker replaced. */
class WorkerPool {
  private stopping = false;
  private cut = 0;
  /** Workers that said hello: they take orders by message; one still loading its code does not yet. */
  private readonly listeningFor = new WeakSet<Worker>();
  private readonly metrics: MetricsAggregation;

  constructor(
    private readonly log: Logger,
    private readonly supervisor: Supervisor,
    own: Metrics,
  ) {
    this.metrics = new MetricsAggregation(own, () => this.all(), (w, m) => this.send(w, m));
    cluster.on('message', (worker, m: unknown) => this.onMessage(worker, m));
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
    supervisor.on('state', () => this.all().forEach((w) => this.sendUpstreamState(w)));
  }

  all(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
  }

  private send(w: Worker, m: Message): void {
    if (w.isConnected()) w.send(m);
  }

  private sendUpstreamState(w: Worker): void {
    this.send(w, { kiwi: 'upstream', healthy: this.supervisor.healthy, reason: this.supervisor.notReadyReason });
  }

  private onMessage(worker: Worker, m: unknown): void {
    if (!isMessage(m)) return;
    if (m.kiwi === 'hello') {
      this.listeningFor.add(worker);
      this.sendUpstreamState(worker);
    } else if (m.kiwi === 'scrape') {
      void this.metrics.scrape().then(
        (text) => this.send(worker, { kiwi: 'scraped', id: m.id, text }),
        (err) => this.log.error({ err_message: (err as Error).message }, 'metrics aggregation failed'),
      );
    } else if (m.kiwi === 'collected') this.metrics.collected(m.id, m.metrics);
    else if (m.kiwi === 'drained') this.cut += m.cut;
  }

  private onExit(worker: Worker, code: number, signal: string): void {
    if (this.stopping) return;
    this.log.error({ worker_pid: worker.process.pid, exit_code: code, signal }, 'worker exited; starting another');
    setTimeout(() => !this.stopping && cluster.fork(), RESPAWN_DELAY_MS).unref();
  }

  /** Forks `cfg.workers` workers (they inherit the command line and serve); resolves once all listen. */
  start(cfg: KiwiConfig): Promise<void> {
    const listening = new Promise<void>((resolve) => {
      let n = 0;
      cluster.on('listening', (w, addr) => {
        this.log.info({ worker_pid: w.process.pid }, 'worker listening');
        if (++n === cfg.workers) {
          this.log.info({ listen: `${addr.address}:${addr.port}`, issuer: cfg.issuer, workers: cfg.workers }, 'listening');
          resolve();
        }
      });
    });
    for (let i = 0; i < cfg.workers; i++) cluster.fork();
    return listening;
  }

  reloadTls(): void {
    this.all().forEach((w) => this.send(w, { kiwi: 'reload-tls' }));
  }

  /** Every worker drains and exits, none is replaced; resolves with the requests the drains cut. */
  async drain(drainTimeoutMs: number): Promise<number> {
    this.stopping = true;
    const workers = this.all();
    const exited = Promise.all(workers.map((w) => (w.isDead() ? null : new Promise((r) => w.once('exit', r)))));
    // Not yet taking orders means not yet serving: SIGTERM ends it (or starts its own drain).
    workers.forEach((w) => (this.listeningFor.has(w) ? this.send(w, { kiwi: 'drain' }) : w.process.kill('SIGTERM')));
    const deadline = setTimeout(() => workers.forEach((w) => !w.isDead() && w.process.kill('SIGKILL')), drainTimeoutMs + DRAIN_GRACE_MS);
    await exited;
    clearTimeout(deadline);
    return this.cut;
  }
}

/**
 * Made once here, before any worker reads them: the store's schema (and
 * data_dir) and the cookie keys, which all workers share, or cookies set by
 * one would not open in another.
 */
function prepareSharedState(cfg: KiwiConfig): SqliteStateStore {
  const store = new SqliteStateStore({ dataDir: cfg.data_dir });
  loadOrCreateCookieKeys(join(cfg.data_dir, 'cookie-keys'));
  return store;
}

export async function startPrimary(cfg: KiwiConfig): Promise<Running> {
  const log = createLogger({ level: cfg.log_level, logDir: cfg.log_dir, component: 'wrapper' });
  await verifyPinned(cfg.upstream_bin, cfg.compatibility_file);
  const metrics = createMetrics();
  const store = prepareSharedState(cfg);
  const stopUpkeep = keepState(store, log, metrics);
  const supervisor = createSupervisor(cfg, log, metrics);
  const workers = new WorkerPool(log, supervisor, metrics);

  let stopping: Promise<void> | null = null;
  const shutdown = (reason: string) =>
    (stopping ??= (async () => {
      log.info({ reason, workers: workers.all().length }, 'shutting down: draining requests');
      const cut = await workers.drain(cfg.drain_timeout_ms);
      // Kanidm goes last so requests still in flight can finish against it.
      await supervisor.stop();
      stopUpkeep();
      await store.close();
      log.info({ cut_requests: cut }, 'stopped');
    })());

  await supervisor.start();
  await workers.start(cfg);
  return { log, metrics, supervisor, shutdown, reloadTls: () => workers.reloadTls() };
}
