// `kiwi-id run`: one process that supervises Kanidm and serves the
// listener, or (`workers` > 1) a primary and its workers (workers/).
import nodeCluster from 'node:cluster';
import { KanidmRunConfig } from '../cluster/kanidm-run-config.js';
import type { KiwiConfig } from '../config/config.js';
import { createLogger } from '../telemetry/log.js';
import { createMetrics } from '../telemetry/metrics.js';
import { verifyPinned } from '../upstream/pin.js';
import { supervisedKanidmControl } from '../upstream/control.js';
import { tuneHeapGrowth } from './heap.js';
import { serveListener } from './listener.js';
import { keepWebAssemblyOnBaselineTier } from './wasm-tier.js';
import type { Running } from './running.js';
import { createSupervisor } from './upkeep.js';
import { startPrimary } from './workers/primary.js';
import { startWorker } from './workers/worker.js';

export async function startWrapper(cfg: KiwiConfig): Promise<Running> {
  // Every serving process (the one process, or the primary and each worker) holds its heap near its live size.
  tuneHeapGrowth(cfg.heap_growing_percent);
  // ... and keeps the HTTP parser's WebAssembly off the optimising compiler, whose scratch memory malloc keeps.
  keepWebAssemblyOnBaselineTier();
  // More than one worker: the primary supervises Kanidm, the workers serve (lifecycle/workers/).
  if (cfg.workers > 1) {
    // The multi-node cluster (gossip listener, Kanidm replication) lives in
    // the one process that serves; it has not been split over workers yet.
    if (cfg.cluster.enabled) throw new Error(`${cfg.config_file}: workers: more than 1 is not supported together with [gossip]/[cluster] yet`);
    return nodeCluster.isPrimary ? startPrimary(cfg) : startWorker(cfg);
  }
  const log = createLogger({ level: cfg.log_level, logDir: cfg.log_dir, component: 'wrapper' });
  // Refuse to start at all (not merely fail to restart later) when the
  // installed Kanidm is not the pinned one.
  await verifyPinned(cfg.upstream_bin, cfg.compatibility_file);

  const metrics = createMetrics();
  // Coordinating Kanidm's replication, Kiwi ID runs Kanidm with a copy of server.toml it may
  // change (the operator's file stays read-only: cluster/kanidm-run-config.ts).
  const kanidmConfig = KanidmRunConfig.forNode(cfg);
  const supervisor = createSupervisor(cfg, log, metrics, kanidmConfig ?? undefined);
  const listener = await serveListener(cfg, log, metrics, supervisor, { ownsState: true });
  const frontDoor = listener.frontDoor;

  let stopping: Promise<void> | null = null;
  const shutdown = (reason: string) =>
    (stopping ??= (async () => {
      log.info({ reason }, 'shutting down: draining requests');
      const cut = await frontDoor.drain();
      // Kanidm goes last so requests still in flight can finish against it.
      await supervisor.stop();
      await listener.close();
      log.info({ cut_requests: cut }, 'stopped');
    })());

  await supervisor.start();
  // Kiwi ID coordinates Kanidm's replication partners once Kanidm runs (in the background:
  // partners appear as other nodes publish their certificates).
  if (kanidmConfig) {
    listener.cluster?.startKanidmReplication(kanidmConfig, supervisedKanidmControl(cfg.upstream_bin, kanidmConfig.path, supervisor)).catch((err) =>
      log.error({ err_message: (err as Error).message }, 'Kanidm replication coordination failed'),
    );
  }
  const addr = await frontDoor.listen();
  log.info({ listen: `${addr.address}:${addr.port}`, issuer: cfg.issuer }, 'listening');
  return { log, metrics, supervisor, frontDoor, shutdown, reloadTls: () => void frontDoor.reloadTls() };
}

