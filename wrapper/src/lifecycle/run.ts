// `kiwi-id run`: wires config, logs, the supervised Kanidm, the front door
// and the issuer together, and owns the process signals.
import nodeCluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { KiwiConfig } from '../config/config.js';
import { loadSigningKey } from '../crypto/keys.js';
import { childLogger, createLogger } from '../telemetry/log.js';
import { ClientsSource } from '../clients/clients-source.js';
import { createFederation, kanidmDirectory } from '../federation/index.js';
import { loadOrCreateCookieKeys } from '../oidc/cookie-keys.js';
import { createIssuer, LOGIN_CALLBACK } from '../oidc/issuer.js';
import { backchannelAgent } from '../oidc/logout/backchannel.js';
import { registrationToken } from '../config/issuer.js';
import { KanidmLogin } from '../oidc/login/kanidm.js';
import { AuthRateLimit } from '../server/auth-rate-limit.js';
import { SqliteAttemptLog } from '../state/sign-in-attempts.js';
import { FrontDoor } from '../server/front-door.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { UpstreamProxy } from '../server/proxy.js';
import { readSecretFile } from '../files/secret-file.js';
import { SqliteStateStore, type StateStore } from '../state/store.js';
import { startCluster } from '../cluster/index.js';
import { verifyPinned } from '../upstream/pin.js';
import { supervisedKanidmControl } from '../upstream/control.js';
import { Supervisor } from '../upstream/supervisor.js';
import { startPrimary, startWorker } from './workers.js';
import { proxyAgent, undiciAgent, upstreamTls } from '../upstream/tls.js';

export interface Running {
  log: Logger;
  metrics: Metrics;
  /** Absent in a cluster worker (the primary supervises Kanidm). */
  supervisor?: Supervisor;
  /** Absent in a cluster primary (its workers serve the listener). */
  frontDoor?: FrontDoor;
  /** Drains, stops Kanidm, resolves when both are done. Idempotent. */
  shutdown(reason: string): Promise<void>;
  /** SIGHUP: the listener certificate on disk is served to new connections. */
  reloadTls(): void;
}

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

/** How people sign in: Kiwi ID as Kanidm's OAuth2 client (null until first boot wrote its secret). */
function kanidmLogin(cfg: KiwiConfig, dispatcher: Dispatcher, store: StateStore, log: Logger): KanidmLogin | null {
  const secretFile = cfg.upstream_oauth2.client_secret_file;
  if (!existsSync(secretFile)) {
    log.error({ file: secretFile }, 'Kanidm OAuth2 client secret missing: user sign-in is disabled until it exists (see README, first boot)');
    return null;
  }
  return new KanidmLogin({
    publicOrigin: cfg.issuer,
    upstreamAddr: cfg.upstream_addr,
    dispatcher,
    clientId: cfg.upstream_oauth2.client_id,
    clientSecret: readSecretFile(secretFile).trim(),
    redirectUri: cfg.issuer + LOGIN_CALLBACK,
    store,
    domain: new URL(cfg.issuer).hostname,
    grantTtlSeconds: Math.max(cfg.tokens.refresh_token_ttl, cfg.tokens.session_ttl),
    freshForMs: cfg.upstream_oauth2.recheck_interval_ms,
    log: childLogger(log, 'login'),
  });
}

/** The OIDC issuer and what it needs: signing key, state store, clients, login at Kanidm. */
async function issuerRoute(cfg: KiwiConfig, log: Logger, dispatcher: Dispatcher, metrics: Metrics, ownsState: boolean) {
  const key = await loadSigningKey(cfg.jwt_private_key, cfg.jwt_public_key);
  const local = new SqliteStateStore({ dataDir: cfg.data_dir, nodeId: cfg.cluster.enabled ? cfg.cluster.node_id : undefined });
  // With [gossip] peers this node is one of several serving as one IdP (cluster/).
  const cluster = await startCluster(cfg, local, key, childLogger(log, 'cluster'), metrics.registry);
  const store = cluster?.store ?? local;
  const stopUpkeep = ownsState ? keepState(store, log, metrics) : () => undefined;
  const login = kanidmLogin(cfg, dispatcher, store, log);
  const federation = createFederation({
    config: cfg.federation, issuer: cfg.issuer, store, directory: kanidmDirectory(cfg, dispatcher),
    log: childLogger(log, 'federation'), registry: metrics.registry,
  });
  const issuer = createIssuer({
    issuer: cfg.issuer,
    key,
    store,
    clients: cluster?.clients ?? new ClientsSource(cfg.clients.file, childLogger(log, 'clients')),
    login,
    ttl: cfg.tokens,
    cookieKeys: loadOrCreateCookieKeys(join(cfg.data_dir, 'cookie-keys')),
    log: childLogger(log, 'issuer'),
    countEvent: (event) => metrics.oidcEvents.inc({ event }),
    extensions: federation.extension && [federation.extension],
    registrationToken: registrationToken(cfg.clients),
    backchannel: {
      dispatcher: backchannelAgent(cfg.backchannel_logout.ca_file),
      timeoutMs: cfg.backchannel_logout.timeout_ms,
      maxAttempts: cfg.backchannel_logout.max_attempts,
    },
  });
  cluster?.attachIssuer(issuer.provider);
  const route = issuer.route;
  const close = async () => {
    issuer.close();
    stopUpkeep();
    await federation.close();
    await cluster?.close();
    await store.close();
  };
  return { route, close, cluster };
}

/** What the upstream's health looks like to the listener (the supervisor itself, or its state relayed to a worker). */
export interface UpstreamHealth {
  readonly healthy: boolean;
  /** Why not, for /readyz (e.g. "upstream crash-looping"). */
  readonly notReadyReason?: string;
}

/**
 * The public listener: issuer, reverse proxy and front door, in this
 * process. `ownsState`: this process sweeps the state store and reports its
 * records (false in cluster workers, the primary does it).
 */
export async function serveListener(
  cfg: KiwiConfig,
  log: Logger,
  metrics: Metrics,
  upstream: UpstreamHealth,
  o: { ownsState: boolean; metricsText?: () => Promise<string> },
) {
  const tls = upstreamTls(cfg.upstream_addr, cfg.upstream_ca);
  const dispatcher = undiciAgent(tls);
  const issuer = await issuerRoute(cfg, log, dispatcher, metrics, o.ownsState);
  const pool = proxyAgent(tls);
  pool.on('connect', () => metrics.upstreamConnections.inc());
  const proxy = new UpstreamProxy({
    target: cfg.upstream_addr,
    agent: pool,
    timeoutMs: cfg.upstream_timeout_ms,
    maxBodySize: cfg.max_body_size,
    isHealthy: () => upstream.healthy,
    log: childLogger(log, 'proxy'),
  });
  // One budget per address across worker processes and restarts (see state/sign-in-attempts.ts).
  const signInLimit = new AuthRateLimit({
    limit: cfg.auth_rate_limit,
    attempts: new SqliteAttemptLog({ dataDir: cfg.data_dir }),
    log: childLogger(log, 'rate-limit'),
  });
  const frontDoor = new FrontDoor({
    host: cfg.listen_host,
    port: cfg.listen_port,
    tlsCert: cfg.tls_cert,
    tlsKey: cfg.tls_key,
    maxHeaderSize: cfg.max_header_size,
    drainTimeoutMs: cfg.drain_timeout_ms,
    log: childLogger(log, 'http'),
    metrics,
    metricsText: o.metricsText,
    proxy,
    isReady: () => upstream.healthy,
    notReadyReason: () => upstream.notReadyReason ?? 'upstream not ready',
    routes: [issuer.route],
    guards: [(req, res, pathname, id) => signInLimit.guard(req, res, pathname, id)],
  });
  const close = async () => {
    proxy.close();
    signInLimit.close();
    await pool.close();
    await dispatcher.close();
    await issuer.close();
  };
  return { frontDoor, close, cluster: issuer.cluster };
}

/** The supervised Kanidm, its health mirrored into the metrics. */
export function createSupervisor(cfg: KiwiConfig, log: Logger, metrics: Metrics): Supervisor {
  const supervisor = new Supervisor({
    bin: cfg.upstream_bin,
    config: cfg.upstream_config,
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

export async function startWrapper(cfg: KiwiConfig): Promise<Running> {
  // More than one worker: the primary supervises Kanidm, the workers serve (lifecycle/workers.ts).
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
  const supervisor = createSupervisor(cfg, log, metrics);
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
  listener.cluster?.startKanidmReplication(cfg.upstream_config, supervisedKanidmControl(cfg.upstream_bin, cfg.upstream_config, supervisor)).catch((err) =>
    log.error({ err_message: (err as Error).message }, 'Kanidm replication coordination failed'),
  );
  const addr = await frontDoor.listen();
  log.info({ listen: `${addr.address}:${addr.port}`, issuer: cfg.issuer }, 'listening');
  return { log, metrics, supervisor, frontDoor, shutdown, reloadTls: () => void frontDoor.reloadTls() };
}

/** Process glue: signals and exit codes. */
export function handleSignals(running: Running): void {
  const stop = (signal: string) => {
    void running.shutdown(signal).then(
      () => process.exit(0),
      (err) => {
        running.log.error({ err_message: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: execa's signal-exit re-raises a signal once it holds
  // the last listener, which would kill the process mid-drain. A repeated
  // signal joins the shutdown already running.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => running.reloadTls());
  running.supervisor?.on('fatal', (err: Error) => {
    running.log.error({ err_message: err.message }, 'upstream cannot be started; exiting');
    void running.shutdown('upstream fatal').finally(() => process.exit(1));
  });
}
