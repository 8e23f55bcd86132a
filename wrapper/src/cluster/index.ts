// A Kiwi ID cluster node: wires the replica, the mutual-TLS listener, gossip, the replicated
// state store, clients and keys, and the distributed mode. `kiwi-id run` calls startClusterNode
// when `[gossip] peers` names other nodes (lifecycle/run.ts).
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ClusterConfig } from '../config/cluster.js';
import { adminPasswordFile, type KiwiConfig, type TokenTtls } from '../config/config.js';
import type { SigningKey } from '../crypto/keys.js';
import { ReplicatedClients } from './clients.js';
import { EnvelopeRejected } from './envelope.js';
import { Gossip, type PeerStatus } from './gossip.js';
import { installProviderKeys, publishOwnKey, unionJwks } from './keys.js';
import { createClusterMetrics, type ClusterMetrics } from './metrics.js';
import { Forwarder, consumeHandler, findHandler } from './modes/forwarding.js';
import { CLIENT_ISSUANCE, Quorum, voteHandler } from './modes/strict.js';
// oidc-provider keeps its grant handlers in its per-instance cache (see keys.ts).
import instance from 'oidc-provider/lib/helpers/weak_cache.js';
import { clusterPaths, consumeJoinToken, issueNodeCertificate, loadNodeIdentity, type NodeIdentity } from './pki.js';
import { ReplicaDb, type DeltaItem } from './replica-db.js';
import { KanidmReplicationCoordinator, type KanidmControl, type ManagedConfig } from './kanidm-replication.js';
import type { NodeEntry } from './node-entry.js';
import { ClusterStateStore, KIND, defineKinds, type ReplicaTarget } from './replicated-state.js';
import { ClusterClient, ClusterServer, HttpError, PATHS, type JoinRequest } from './transport.js';

export { registerModel, classifyModel } from './replicated-state.js';

export interface ClusterNodeOptions {
  config: ClusterConfig;
  dataDir: string;
  issuer: string;
  local: ReplicaTarget;
  key: SigningKey;
  clientsFile: string;
  tokens: TokenTtls;
  log: Logger;
  registry: Registry;
  /** Secrets every node must share, handed to a joining node with its certificate. */
  cookieKeysFile?: string;
  upstreamOauth2SecretFile?: string;
  /** Kanidm's admin passwords (first boot's root-only files): one Kanidm database, one set. */
  adminPasswordFiles?: { idm_admin: string; admin: string };
}

export interface ClusterStatus {
  node_id: string;
  mode: string;
  listen: string;
  epoch: string;
  log_position: number;
  nodes: Array<NodeEntry & { self: boolean }>;
  peers: PeerStatus[];
  entries: Record<string, { present: number; total: number }>;
}

/** In <data_dir>/cluster: the node this one joined from (its Kanidm refreshes from there). */
export const SUPPLIER_FILE = 'supplier';

/** Clock drift tolerated in envelopes and timestamps (beyond it a peer's clock is refused). */
export const MAX_DRIFT_MS = 60_000;

export class ClusterNode {
  readonly db: ReplicaDb;
  readonly store: ClusterStateStore;
  readonly clients: ReplicatedClients;
  readonly gossip: Gossip;
  readonly metrics: ClusterMetrics;
  readonly identity: NodeIdentity;
  private readonly server: ClusterServer;
  private readonly client: ClusterClient;
  private listenAddr = '';
  private readonly providers: Provider[] = [];
  private kanidm: KanidmReplicationCoordinator | null = null;
  private quorum: Quorum | undefined;

  private constructor(private readonly o: ClusterNodeOptions) {
    const c = o.config;
    const paths = clusterPaths(o.dataDir);
    this.identity = loadNodeIdentity(paths, c.node_id);
    this.metrics = createClusterMetrics(o.registry);
    this.db = new ReplicaDb({ dir: paths.dir, node: c.node_id, maxDriftMs: MAX_DRIFT_MS });
    defineKinds(this.db);
    const allowed = new Set(c.gossip.allowed_node_ids);
    const transport = {
      identity: this.identity,
      allowedNodeIds: allowed,
      maxAgeMs: c.gossip.tombstone_ttl_secs * 1000,
      maxDriftMs: MAX_DRIFT_MS,
      onReject: (reason: string) => this.metrics.rejected.inc({ reason }),
    };
    this.server = new ClusterServer({ ...transport, host: c.gossip.listen_host, port: c.gossip.listen_port, log: o.log });
    const host = c.gossip.listen_host;
    this.client = new ClusterClient({ ...transport, localAddress: host === '0.0.0.0' || host === '::' ? undefined : host });
    const intervalMs = c.gossip.interval_secs * 1000;
    this.gossip = new Gossip({
      db: this.db,
      client: this.client,
      peers: c.gossip.peers,
      intervalMs,
      log: o.log,
      metrics: this.metrics,
      accept: (_from, item) => this.accept(item, allowed),
      // A client added with `kiwi-id client add` spreads without waiting for a lookup here.
      beforeRound: () => void this.clients?.all(),
    });
    const mode = c.cluster.distributed_mode;
    const forwarding = mode === 'forwarding' || mode === 'strict';
    const quorum = (this.quorum =
      mode === 'strict'
        ? new Quorum({
            client: this.client,
            peers: c.gossip.peers,
            livePeers: () => this.gossip.livePeers(),
            k: c.cluster.quorum_k,
            timeoutMs: c.cluster.quorum_timeout_ms,
            fallback: c.cluster.quorum_fallback,
            log: o.log,
            metrics: this.metrics,
          })
        : undefined);
    this.store = new ClusterStateStore({
      local: o.local,
      db: this.db,
      mode,
      revocationTtlMs: Math.max(o.tokens.refresh_token_ttl, o.tokens.session_ttl) * 1000,
      tombstoneTtlMs: c.gossip.tombstone_ttl_secs * 1000,
      coordination: forwarding
        ? new Forwarder(this.client, c.gossip.peers, this.metrics, o.log, Math.max(2000, c.cluster.quorum_timeout_ms), quorum)
        : undefined,
      onError: (err, what) => o.log.error({ err_message: err.message, what }, 'applying replicated change failed'),
    });
    this.server.handle(PATHS.gossip, (env) => this.gossip.handle(env));
    // As in the reference: the internal endpoints do not exist in modes that do not use them.
    if (forwarding) {
      this.server.handle(PATHS.consume, consumeHandler(this.store));
      this.server.handle(PATHS.find, findHandler(this.store));
    }
    if (mode === 'strict') this.server.handle(PATHS.vote, voteHandler(this.db));
    if (fs.existsSync(paths.caKey)) this.server.handleJoin((req) => this.join(req, allowed, paths.caKey));
    this.clients = new ReplicatedClients(o.clientsFile, o.log, this.db);
    this.db.onChange((changes) => {
      if (changes.some((ch) => ch.kind === KIND.key)) this.reinstallKeys();
    });
  }

  static async start(o: ClusterNodeOptions): Promise<ClusterNode> {
    const node = new ClusterNode(o);
    const rec = node.store.reconcile();
    o.log.info({ ...rec }, 'cluster replica reconciled with the local state store');
    const retainMs = Math.max(o.tokens.id_token_ttl, o.tokens.access_token_ttl) * 1000;
    publishOwnKey(node.db, o.key, retainMs);
    node.publishNode();
    const addr = await node.server.listen();
    node.listenAddr = `${addr.address}:${addr.port}`;
    node.gossip.start();
    o.log.info(
      { node_id: o.config.node_id, listen: node.listenAddr, peers: o.config.gossip.peers, mode: o.config.cluster.distributed_mode },
      'cluster node started',
    );
    return node;
  }

  /** Dropped before merge: node entries of nodes not in allowed_node_ids. */
  private accept(item: DeltaItem, allowed: ReadonlySet<string>): boolean {
    if (item.kind === KIND.node && !allowed.has(item.key)) {
      this.metrics.rejected.inc({ reason: 'unlisted_node_entry' });
      return false;
    }
    return true;
  }

  publishNode(extra: Partial<NodeEntry> = {}): void {
    const c = this.o.config;
    const prev = this.db.value<NodeEntry>(KIND.node, c.node_id);
    const entry: NodeEntry = {
      node_id: c.node_id,
      gossip_url: `https://${c.node_id}:${c.gossip.listen_port}`,
      issuer: this.o.issuer,
      mode: c.cluster.distributed_mode,
      started_at: Date.now(),
      kanidm: prev?.kanidm ?? null,
      ...extra,
    };
    this.db.localSet(KIND.node, c.node_id, entry);
  }

  /** Serve the union of node keys and accept them; accept issuer_aliases as client-assertion audiences. */
  attachIssuer(provider: Provider): void {
    this.providers.push(provider);
    installProviderKeys(provider, unionJwks(this.db, this.o.key));
    this.gateClientCredentials(provider);
    const aliases = this.o.config.issuer_aliases;
    if (aliases.length) {
      const proto = provider.OIDCContext.prototype as { clientJwtAuthExpectedAudience(): Set<string> };
      const original = proto.clientJwtAuthExpectedAudience;
      proto.clientJwtAuthExpectedAudience = function (this: unknown) {
        const set = original.call(this);
        for (const a of aliases) set.add(a);
        return set;
      };
    }
  }

  /** strict: client_credentials tokens need the quorum too (codes and refresh tokens get it at consumption). */
  private gateClientCredentials(provider: Provider): void {
    const quorum = this.quorum;
    if (!quorum) return;
    const handlers = (instance(provider) as { grantTypeHandlers?: Map<string, (ctx: any, next: () => Promise<void>) => Promise<void>> }).grantTypeHandlers;
    const original = handlers?.get('client_credentials');
    if (!handlers || !original) return;
    handlers.set('client_credentials', async (ctx, next) => {
      await quorum.approve({ model: CLIENT_ISSUANCE, id: String(ctx.oidc?.client?.clientId ?? ''), grantId: null });
      return original(ctx, next);
    });
  }

  private reinstallKeys(): void {
    const jwks = unionJwks(this.db, this.o.key);
    for (const p of this.providers) {
      try {
        installProviderKeys(p, jwks);
      } catch (e) {
        this.o.log.error({ err_message: (e as Error).message }, 'cannot install cluster keys');
      }
    }
  }

  jwks() {
    return unionJwks(this.db, this.o.key);
  }

  private async join(req: JoinRequest, allowed: ReadonlySet<string>, caKeyFile: string) {
    const nodeId = typeof req?.node_id === 'string' ? req.node_id.toLowerCase() : '';
    if (!nodeId || typeof req.public_key !== 'string' || typeof req.secret !== 'string') throw new HttpError(400, 'node_id, public_key and secret required');
    // Fail closed: only listed nodes may join.
    if (!allowed.has(nodeId)) {
      this.metrics.rejected.inc({ reason: 'unlisted_join' });
      throw new HttpError(403, `node ${JSON.stringify(nodeId)} is not in [gossip] allowed_node_ids of ${this.o.config.node_id}`);
    }
    try {
      consumeJoinToken(clusterPaths(this.o.dataDir), req.secret, nodeId);
    } catch (e) {
      this.metrics.rejected.inc({ reason: 'bad_join_token' });
      throw new HttpError(403, (e as Error).message);
    }
    const certificate = issueNodeCertificate(fs.readFileSync(caKeyFile, 'utf8'), this.identity.caPem, nodeId, req.public_key);
    this.o.log.info({ node_id: nodeId, fingerprint: new X509Certificate(certificate).fingerprint256 }, 'node joined the cluster');
    // Sessions must verify on every node (cookie keys), and after Kanidm replication refreshes
    // the new node from this one, Kiwi ID's OAuth2 client at Kanidm is this node's.
    const read = (f?: string) => (f && fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : undefined);
    return {
      certificate,
      ca: this.identity.caPem,
      cookie_keys: read(this.o.cookieKeysFile),
      upstream_oauth2_secret: read(this.o.upstreamOauth2SecretFile),
      admin_passwords: this.o.adminPasswordFiles
        ? { idm_admin: read(this.o.adminPasswordFiles.idm_admin), admin: read(this.o.adminPasswordFiles.admin) }
        : undefined,
    };
  }

  /**
   * Coordinates Kanidm's own replication (`[cluster] kanidm_replication`); call once Kanidm is
   * running. `config` is the config Kanidm runs with, where the partners are written
   * (kanidm-run-config.ts); `control` runs its admin commands and restarts it.
   */
  async startKanidmReplication(config: ManagedConfig, control: KanidmControl): Promise<void> {
    const c = this.o.config;
    if (!c.cluster.kanidm_replication) return;
    const paths = clusterPaths(this.o.dataDir);
    const supplierFile = path.join(paths.dir, SUPPLIER_FILE);
    const supplier = fs.existsSync(supplierFile) ? fs.readFileSync(supplierFile, 'utf8').trim() || null : null;
    const host = c.cluster.kanidm_replication_host.includes(':') ? `[${c.cluster.kanidm_replication_host}]` : c.cluster.kanidm_replication_host;
    this.kanidm = new KanidmReplicationCoordinator({
      config,
      nodeId: c.node_id,
      origin: `repl://${c.node_id}:${c.cluster.kanidm_replication_port}`,
      bindaddress: `${host}:${c.cluster.kanidm_replication_port}`,
      supplier,
      refreshedMarker: path.join(paths.dir, 'kanidm-refreshed'),
      db: this.db,
      publish: (kanidm) => this.publishNode({ kanidm }),
      control,
      log: this.o.log,
    });
    await this.kanidm.start();
  }

  status(): ClusterStatus {
    this.metrics.livePeers.set(this.gossip.livePeers().length);
    return {
      node_id: this.o.config.node_id,
      mode: this.o.config.cluster.distributed_mode,
      listen: this.listenAddr,
      epoch: this.db.epoch,
      log_position: this.db.maxSeq,
      nodes: this.db.entries<NodeEntry>(KIND.node).map((e) => ({ ...e.value, self: e.key === this.o.config.node_id })),
      peers: this.gossip.status(),
      entries: this.db.counts(),
    };
  }

  async close(): Promise<void> {
    this.kanidm?.stop();
    await this.gossip.stop();
    await this.server.close();
    await this.client.close();
    this.db.close();
  }
}

/** `kiwi-id run`: the cluster node when `[gossip] peers` names other nodes, else null. */
export async function startCluster(cfg: KiwiConfig, local: ReplicaTarget, key: SigningKey, log: Logger, registry: Registry): Promise<ClusterNode | null> {
  if (!cfg.cluster.enabled) return null;
  return ClusterNode.start({
    config: cfg.cluster,
    dataDir: cfg.data_dir,
    issuer: cfg.issuer,
    local,
    key,
    clientsFile: cfg.clients.file,
    tokens: cfg.tokens,
    log,
    registry,
    cookieKeysFile: path.join(cfg.data_dir, 'cookie-keys'),
    upstreamOauth2SecretFile: cfg.upstream_oauth2.client_secret_file,
    adminPasswordFiles: { idm_admin: adminPasswordFile(cfg, 'idm_admin'), admin: adminPasswordFile(cfg, 'admin') },
  });
}

export function isRejection(e: unknown): e is EnvelopeRejected {
  return e instanceof EnvelopeRejected;
}
