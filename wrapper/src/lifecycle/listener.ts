// The public listener and what serves behind it, in one process: the front
// door, the reverse proxy to Kanidm, the sign-in rate limit, and the issuer
// with its state store, login at Kanidm, federation and (with [gossip]) the
// multi-node cluster. The only process and every worker build it the same way.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { KiwiConfig } from '../config/config.js';
import { registrationToken } from '../config/issuer.js';
import { loadSigningKey } from '../crypto/keys.js';
import { childLogger } from '../telemetry/log.js';
import { ClientsSource } from '../clients/clients-source.js';
import { createFederation, kanidmDirectory } from '../federation/index.js';
import { loadOrCreateCookieKeys } from '../oidc/cookie-keys.js';
import { createIssuer, LOGIN_CALLBACK } from '../oidc/issuer.js';
import { backchannelAgent } from '../oidc/logout/backchannel.js';
import { KanidmLogin } from '../oidc/login/kanidm.js';
import { AuthRateLimit } from '../server/auth-rate-limit.js';
import { FrontDoor } from '../server/front-door.js';
import { UpstreamProxy } from '../server/proxy.js';
import { readSecretFile } from '../files/secret-file.js';
import { SqliteAttemptLog } from '../state/sign-in-attempts.js';
import { SqliteStateStore, type StateStore } from '../state/store.js';
import type { Metrics } from '../telemetry/metrics.js';
import { startCluster } from '../cluster/index.js';
import { proxyAgent, undiciAgent, upstreamTls } from '../upstream/tls.js';
import { keepState } from './upkeep.js';

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

