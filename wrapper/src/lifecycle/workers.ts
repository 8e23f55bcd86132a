// `kiwi-id run` with `workers` > 1: one event loop per worker process, all
// accepting on the same listener (node:cluster hands out connections).
//
// primary   supervises Kanidm (one Kanidm, whatever the worker count), owns
//           the state store's upkeep (sweep, record counts), relays Kanidm's
//           health to the workers, answers /metrics for all processes
//           (prom-client's aggregator), and turns signals into orders:
//           SIGTERM/SIGINT → every worker drains and exits, then Kanidm stops;
//           SIGHUP → every worker reloads the listener certificate.
// workers   serve the listener: front door, proxy, issuer. The issuer keeps
//           no state of its own in memory (sessions, grants, codes, replay
//           marks live in the shared SQLite store, WAL mode), so any worker
//           can answer any step of a flow.
//
// Why: one Node event loop tops out at about 1 / (CPU per request); a
// second worker uses the cores Kanidm and the clients leave idle
// (bench/proxy.ts, README). Each worker is a whole Node process, so memory
// grows with the count; `workers = 1` (the default) keeps one process.
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;
import type { KiwiConfig } from '../config/config.js';
import { loadOrCreateCookieKeys } from '../oidc/cookie-keys.js';
import { SqliteStateStore } from '../state/store.js';
import { createLogger } from '../telemetry/log.js';
import { createMetrics } from '../telemetry/metrics.js';
import { verifyPinned } from '../upstream/pin.js';
import { serveListener } from './listener.js';
import type { Running } from './running.js';
import { createSupervisor, keepState } from './upkeep.js';

/** Messages between the primary and its workers (all carry `kiwi` so other IPC users are left alone). */
type Message =
  | { kiwi: 'hello' } // worker → primary: listening for orders, send the upstream state
  | { kiwi: 'upstream'; healthy: boolean; reason?: string } // primary → workers
  | { kiwi: 'scrape'; id: number } // worker → primary: /metrics for all processes, please
  | { kiwi: 'scraped'; id: number; text: string } // primary → worker
  | { kiwi: 'collect'; id: number } // primary → worker: your registry as JSON
  | { kiwi: 'collected'; id: number; metrics: MetricJson[] } // worker → primary
  | { kiwi: 'drain' } // primary → worker
  | { kiwi: 'drained'; cut: number } // worker → primary, then it exits
  | { kiwi: 'reload-tls' }; // primary → worker

const isMessage = (m: unknown): m is Message => typeof m === 'object' && m !== null && typeof (m as { kiwi?: unknown }).kiwi === 'string';
const RESPAWN_DELAY_MS = 1_000;
const SCRAPE_TIMEOUT_MS = 5_000;

export async function startPrimary(cfg: KiwiConfig): Promise<Running> {
  const log = createLogger({ level: cfg.log_level, logDir: cfg.log_dir, component: 'wrapper' });
  await verifyPinned(cfg.upstream_bin, cfg.compatibility_file);
  const metrics = createMetrics();
  // Made once here, before any worker reads them: the cookie keys (shared by
  // all workers, or cookies from one would not open in another) and the store's schema.
  const store = new SqliteStateStore({ dataDir: cfg.data_dir }); // (creates data_dir)
  loadOrCreateCookieKeys(join(cfg.data_dir, 'cookie-keys'));
  const stopUpkeep = keepState(store, log, metrics);
  const supervisor = createSupervisor(cfg, log, metrics);

  const send = (w: Worker, m: Message) => {
    if (w.isConnected()) w.send(m);
  };
  const everyWorker = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
  supervisor.on('state', () => everyWorker().forEach((w) => send(w, { kiwi: 'upstream', healthy: supervisor.healthy, reason: supervisor.notReadyReason })));

  // /metrics: every worker's registry and the primary's own, aggregated.
  let nextId = 0;
  const collecting = new Map<number, { want: number; got: MetricJson[][]; done: () => void }>();
  const scrape = async (): Promise<string> => {
    const id = nextId++;
    const workers = everyWorker().filter((w) => w.isConnected());
    const got: MetricJson[][] = [await metrics.registry.getMetricsAsJSON()];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SCRAPE_TIMEOUT_MS); // a stuck worker does not stall /metrics
      collecting.set(id, { want: workers.length, got, done: () => (clearTimeout(timer), resolve()) });
      if (workers.length === 0) resolve();
      workers.forEach((w) => send(w, { kiwi: 'collect', id }));
    });
    collecting.delete(id);
    return AggregatorRegistry.aggregate(got).metrics();
  };

  let stopping = false;
  let cutTotal = 0;
  /** Workers that said hello: they take orders by message; one still loading its code does not yet. */
  const listeningFor = new WeakSet<Worker>();
  const fork = () => cluster.fork();
  cluster.on('message', (worker, m: unknown) => {
    if (!isMessage(m)) return;
    if (m.kiwi === 'hello') {
      listeningFor.add(worker);
      send(worker, { kiwi: 'upstream', healthy: supervisor.healthy, reason: supervisor.notReadyReason });
    }
    else if (m.kiwi === 'scrape') {
      void scrape().then(
        (text) => send(worker, { kiwi: 'scraped', id: m.id, text }),
        (err) => log.error({ err_message: (err as Error).message }, 'metrics aggregation failed'),
      );
    } else if (m.kiwi === 'collected') {
      const c = collecting.get(m.id);
      if (c) {
        c.got.push(m.metrics);
        if (c.got.length - 1 >= c.want) c.done();
      }
    } else if (m.kiwi === 'drained') cutTotal += m.cut;
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    log.error({ worker_pid: worker.process.pid, exit_code: code, signal }, 'worker exited; starting another');
    setTimeout(() => !stopping && fork(), RESPAWN_DELAY_MS).unref();
  });

  let stoppingP: Promise<void> | null = null;
  const shutdown = (reason: string) =>
    (stoppingP ??= (async () => {
      stopping = true;
      log.info({ reason, workers: everyWorker().length }, 'shutting down: draining requests');
      const workers = everyWorker();
      const exited = Promise.all(workers.map((w) => (w.isDead() ? null : new Promise((r) => w.once('exit', r)))));
      // Not yet taking orders means not yet serving: SIGTERM ends it (or starts its own drain).
      workers.forEach((w) => (listeningFor.has(w) ? send(w, { kiwi: 'drain' }) : w.process.kill('SIGTERM')));
      // A worker that does not finish its drain in time is ended (its drain has its own deadline).
      const deadline = setTimeout(() => workers.forEach((w) => !w.isDead() && w.process.kill('SIGKILL')), cfg.drain_timeout_ms + 5_000);
      await exited;
      clearTimeout(deadline);
      // Kanidm goes last so requests still in flight can finish against it.
      await supervisor.stop();
      stopUpkeep();
      await store.close();
      log.info({ cut_requests: cutTotal }, 'stopped');
    })());

  await supervisor.start();
  // Workers inherit the command line; they see `cluster.isWorker` and serve.
  const listening = new Promise<void>((resolve) => {
    let n = 0;
    cluster.on('listening', (w, addr) => {
      log.info({ worker_pid: w.process.pid }, 'worker listening');
      if (++n === cfg.workers) {
        log.info({ listen: `${addr.address}:${addr.port}`, issuer: cfg.issuer, workers: cfg.workers }, 'listening');
        resolve();
      }
    });
  });
  for (let i = 0; i < cfg.workers; i++) fork();
  await listening;
  return {
    log,
    metrics,
    supervisor,
    shutdown,
    reloadTls: () => everyWorker().forEach((w) => send(w, { kiwi: 'reload-tls' })),
  };
}

export async function startWorker(cfg: KiwiConfig): Promise<Running> {
  const log = createLogger({ level: cfg.log_level, logDir: cfg.log_dir, component: 'wrapper' }).child({ worker: cluster.worker?.id });
  const metrics = createMetrics();
  const upstream: { healthy: boolean; notReadyReason?: string } = { healthy: false };
  const scrapes = new Map<number, (text: string) => void>();
  let nextId = 0;
  const toPrimary = (m: Message) => new Promise<void>((resolve) => (process.send ? process.send(m, () => resolve()) : resolve()));
  const metricsText = () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => (scrapes.delete(id), reject(new Error('metrics from the primary timed out'))), SCRAPE_TIMEOUT_MS * 2);
      scrapes.set(id, (text) => (clearTimeout(timer), resolve(text)));
      void toPrimary({ kiwi: 'scrape', id });
    });
  // Orders are taken from the start: one that arrives while the listener is
  // still being built is carried out once it exists.
  let serving: Awaited<ReturnType<typeof serveListener>> | null = null;
  let drainOrdered = false;
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.kiwi === 'upstream') {
      upstream.healthy = m.healthy;
      upstream.notReadyReason = m.reason;
    } else if (m.kiwi === 'scraped') scrapes.get(m.id)?.(m.text);
    else if (m.kiwi === 'collect') {
      void metrics.registry.getMetricsAsJSON().then((json) => toPrimary({ kiwi: 'collected', id: m.id, metrics: json }));
    } else if (m.kiwi === 'reload-tls') serving?.frontDoor.reloadTls(); // not yet serving: it will read the file on disk
    else if (m.kiwi === 'drain') {
      drainOrdered = true;
      if (serving) void shutdown('primary').then(() => process.exit(0));
    }
  });

  let stopping: Promise<void> | null = null;
  const shutdown = (reason: string) =>
    (stopping ??= (async () => {
      log.info({ reason }, 'worker draining');
      const cut = serving ? await serving.frontDoor.drain() : 0;
      await serving?.close();
      await toPrimary({ kiwi: 'drained', cut });
    })());

  void toPrimary({ kiwi: 'hello' });
  serving = await serveListener(cfg, log, metrics, upstream, { ownsState: false, metricsText });
  const frontDoor = serving.frontDoor;
  if (drainOrdered) {
    await shutdown('primary');
    process.exit(0);
  }
  await frontDoor.listen();
  return { log, metrics, frontDoor, shutdown, reloadTls: () => void frontDoor.reloadTls() };
}
