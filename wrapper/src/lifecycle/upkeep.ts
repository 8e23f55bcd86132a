// What exactly one process of a running Kiwi ID does for all of them (the
// only process, or the primary of several workers): supervise Kanidm, and
// keep the state store (sweep, record counts for /metrics).
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { KiwiConfig } from '../config/config.js';
import type { SqliteStateStore } from '../state/store.js';
import { childLogger } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { Supervisor } from '../upstream/supervisor.js';
import { undiciAgent, upstreamTls } from '../upstream/tls.js';

const SWEEP_INTERVAL_MS = 60_000;

/**
 * The state store's upkeep: expired records swept, live records counted for
 * /metrics. One process does it (the only one, or the cluster primary).
 */
export function keepState(store: Pick<SqliteStateStore, 'countLive' | 'sweep'>, log: Logger, metrics: Metrics): () => void {
  metrics.observeState(() => store.countLive());
  const sweeper = setInterval(() => {
    store.sweep().catch((err) => log.error({ err_message: (err as Error).message }, 'state sweep failed'));
  }, SWEEP_INTERVAL_MS).unref();
  return () => clearInterval(sweeper);
}

/**
 * The supervised Kanidm, its health mirrored into the metrics. `kanidmConfig`: the config it runs
 * with when that is not the operator's file itself (the cluster's, composed before each start).
 */
export function createSupervisor(cfg: KiwiConfig, log: Logger, metrics: Metrics, kanidmConfig?: { path: string; compose(): boolean }): Supervisor {
  const supervisor = new Supervisor({
    bin: cfg.upstream_bin,
    config: kanidmConfig?.path ?? cfg.upstream_config,
    prepare: kanidmConfig ? () => void kanidmConfig.compose() : undefined,
    upstreamAddr: cfg.upstream_addr,
    dispatcher: undiciAgent(upstreamTls(cfg.upstream_addr, cfg.upstream_ca)),
    compatibilityFile: cfg.compatibility_file,
    pidFile: join(cfg.data_dir, 'upstream.pid'),
    intervalMs: cfg.health_check_interval_ms,
    timeoutMs: cfg.health_check_timeout_ms,
    log: childLogger(log, 'upstream'),
  });
  supervisor.on('state', () => {
    metrics.upstreamHealthy.set(supervisor.healthy ? 1 : 0);
    metrics.upstreamCrashLoop.set(supervisor.crashLoop ? 1 : 0);
  });
  supervisor.on('restart', () => metrics.upstreamRestarts.inc());
  return supervisor;
}

