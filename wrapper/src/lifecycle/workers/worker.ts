// A worker of `kiwi-id run` with `workers` > 1 (messages.ts says who does
// what): it serves the shared listener and takes the primary's orders. Orders
// are taken from the start: one that arrives while the listener is still being
// built is carried out once it exists.
import cluster from 'node:cluster';
import type { KiwiConfig } from '../../config/config.js';
import { createLogger } from '../../telemetry/log.js';
import { createMetrics } from '../../telemetry/metrics.js';
import { serveListener } from '../listener.js';
import type { Running } from '../running.js';
import { isMessage, SCRAPE_TIMEOUT_MS, type Message } from './messages.js';

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
