// Several in-process Kiwi ID nodes forming one cluster on loopback: each node has its own
// loopback address (127.R.S.10, .11, ... with random R, S so concurrent runs never collide),
// its own state store, signing key, clients file, cluster identity (issued by a cluster CA the
// way `kiwi-id cluster init/join` do), mutual-TLS gossip listener and front door with the real
// issuer. All front doors serve one canonical issuer, https://id.kiwi.test:PORT; a test picks the
// node a request goes to (what a load balancer or DNS does in production) with `via(i)`.
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { Agent, fetch as undiciFetch, request } from 'undici';
import * as oidc from 'openid-client';
import { addClient } from '../../../wrapper/src/clients/client-list.js';
import type { ClientInput, ClientRecord } from '../../../wrapper/src/clients/client-record.js';
import { saveClients } from '../../../wrapper/src/clients/clients-file.js';
import { generateSigningKeyPair, loadSigningKey, type SigningKey } from '../../../wrapper/src/crypto/keys.js';
import { generateDevCertificate } from '../../../wrapper/src/crypto/tls-certs.js';
import { createLogger } from '../../../wrapper/src/telemetry/log.js';
import { SqliteStateStore } from '../../../wrapper/src/state/store.js';
import { FrontDoor, type Route } from '../../../wrapper/src/server/front-door.js';
import { createMetrics, type Metrics } from '../../../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../../../wrapper/src/server/proxy.js';
import { proxyAgent, upstreamTls } from '../../../wrapper/src/upstream/tls.js';
import { createIssuer } from '../../../wrapper/src/oidc/issuer.js';
import type Provider from 'oidc-provider';
import type { LoginMethod } from '../../../wrapper/src/oidc/login/method.js';
import { parseClusterConfig, type DistributedMode } from '../../../wrapper/src/config/cluster.js';
import { ClusterNode } from '../../../wrapper/src/cluster/index.js';
import { clusterPaths, createClusterCa, issueNodeCertificate, newNodeKey, writeNodeIdentity } from '../../../wrapper/src/cluster/pki.js';

export const TTL = { access_token_ttl: 300, refresh_token_ttl: 3600, auth_code_ttl: 60, id_token_ttl: 300, session_ttl: 3600 };
export const ISSUER_HOST = 'id.kiwi.test';

export interface ClusterOptions {
  nodes?: number;
  mode?: DistributedMode;
  intervalSecs?: number;
  tombstoneTtlSecs?: number;
  quorumK?: number;
  quorumTimeoutMs?: number;
  quorumFallback?: boolean;
  /** Node ids allowed to gossip (default: all of this cluster's nodes). */
  allowed?: (ids: string[]) => string[];
  login?: (view: NodeView) => LoginMethod | null;
  /** issuer_aliases of each node (its own address, say). */
  issuerAliases?: (node: TestNode) => string[];
}

/** What CookieBrowser and ScriptedLogin need of an issuer: its URL and an HTTP function. */
export interface NodeView {
  issuer: string;
  http(p: string, init?: Parameters<typeof request>[1]): Promise<{ status: number; headers: Record<string, any>; text: string }>;
}

async function freePortOn(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export class TestNode {
  readonly root: string;
  readonly logLines: string[] = [];
  readonly secrets: Record<string, string> = {};
  store!: SqliteStateStore;
  cluster!: ClusterNode;
  provider!: Provider;
  key!: SigningKey;
  metrics!: Metrics;
  gossipPort = 0;
  private front: FrontDoor | null = null;
  private route!: Route;
  private clients: ClientRecord[] = [];
  readonly log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => (this.logLines.push(String(c)), cb()) }) });
  running = false;

  constructor(
    readonly h: ClusterHarness,
    readonly index: number,
    readonly ip: string,
  ) {
    this.root = path.join(h.root, `node${index + 1}`);
    fs.mkdirSync(this.root, { recursive: true });
  }

  get nodeId(): string {
    return this.ip;
  }

  get clientsFile(): string {
    return path.join(this.root, 'clients.toml');
  }

  get dataDir(): string {
    return path.join(this.root, 'data');
  }

  async prepare(): Promise<void> {
    await generateSigningKeyPair(path.join(this.root, 'jwt-private.pem'), path.join(this.root, 'jwt-public.pem'));
    this.gossipPort = await freePortOn(this.ip);
  }

  config() {
    const o = this.h.o;
    const ids = this.h.nodes.map((n) => n.nodeId);
    return parseClusterConfig(
      {
        node_id: this.nodeId,
        issuer_aliases: o.issuerAliases ? o.issuerAliases(this) : [],
        gossip: {
          peers: this.h.nodes.map((n) => `https://${n.ip}:${n.gossipPort}`),
          interval_secs: o.intervalSecs ?? 1,
          allowed_node_ids: o.allowed ? o.allowed(ids) : ids,
          tombstone_ttl_secs: o.tombstoneTtlSecs ?? 3600,
          listen_addr: `${this.ip}:${this.gossipPort}`,
        },
        cluster: {
          distributed_mode: o.mode ?? 'eventual',
          quorum_k: o.quorumK ?? 0,
          quorum_timeout_ms: o.quorumTimeoutMs ?? 500,
          quorum_fallback: o.quorumFallback ?? false,
          kanidm_replication: false,
        },
      },
      this.ip,
      (k, p) => new Error(`${k}: ${p}`),
    );
  }

  async start(): Promise<void> {
    this.key = await loadSigningKey(path.join(this.root, 'jwt-private.pem'), path.join(this.root, 'jwt-public.pem'));
    this.store = new SqliteStateStore({ dataDir: this.dataDir, nodeId: this.nodeId });
    this.metrics = createMetrics({ processMetrics: false });
    this.cluster = await ClusterNode.start({
      config: this.config(),
      dataDir: this.dataDir,
      issuer: this.h.issuer,
      local: this.store,
      key: this.key,
      clientsFile: this.clientsFile,
      tokens: TTL,
      log: this.log,
      registry: this.metrics.registry,
    });
    const made = createIssuer({
      issuer: this.h.issuer,
      key: this.key,
      store: this.cluster.store,
      clients: this.cluster.clients,
      login: this.h.login,
      ttl: TTL,
      cookieKeys: this.h.cookieKeys,
      log: this.log,
    });
    this.provider = made.provider;
    this.route = made.route;
    this.cluster.attachIssuer(this.provider);
    const upstream = 'https://127.0.0.1:1';
    this.front = new FrontDoor({
      host: this.ip,
      port: this.h.port,
      tlsCert: this.h.tlsCert,
      tlsKey: this.h.tlsKey,
      maxHeaderSize: 16384,
      drainTimeoutMs: 1000,
      log: this.log,
      metrics: this.metrics,
      proxy: new UpstreamProxy({
        target: upstream,
        agent: proxyAgent(upstreamTls(upstream, this.h.tlsCa)),
        timeoutMs: 1000,
        maxBodySize: 65536,
        isHealthy: () => false,
        log: this.log,
      }),
      isReady: () => true,
      routes: [this.route],
    });
    await this.front.listen();
    this.running = true;
  }

  /** Stops everything of this node (its data stays for start()). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.front?.drain();
    await this.cluster.close();
    await this.cluster.store.close();
  }

  register(input: ClientInput): void {
    const r = addClient(this.clients, input);
    this.clients = r.clients;
    if (r.secret) this.secrets[input.client_id] = r.secret;
    saveClients(this.clientsFile, this.clients);
  }

  view(): NodeView {
    return this.h.via(this.index);
  }
}

export class ClusterHarness {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cluster-'));
  readonly nodes: TestNode[] = [];
  readonly cookieKeys = [randomBytes(32).toString('base64url')];
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly tlsCa: string;
  readonly net = `127.${randomInt(1, 250)}.${randomInt(1, 250)}`;
  port = 0;
  issuer = '';
  login: LoginMethod | null = null;
  private readonly agents: Agent[] = [];

  constructor(readonly o: ClusterOptions = {}) {
    const n = o.nodes ?? 3;
    for (let i = 0; i < n; i++) this.nodes.push(new TestNode(this, i, `${this.net}.${10 + i}`));
    this.tlsCert = path.join(this.root, 'front.crt');
    this.tlsKey = path.join(this.root, 'front.key');
    this.tlsCa = path.join(this.root, 'front-ca.crt');
    generateDevCertificate({ certPath: this.tlsCert, keyPath: this.tlsKey, caPath: this.tlsCa, hostnames: [ISSUER_HOST], ips: this.nodes.map((x) => x.ip), days: 2 });
  }

  async start(): Promise<void> {
    this.port = await freePortOn(this.nodes[0]!.ip);
    this.issuer = `https://${ISSUER_HOST}:${this.port}`;
    this.login = this.o.login ? this.o.login(this.via(0)) : null;
    for (const n of this.nodes) await n.prepare();
    // Cluster identities as `kiwi-id cluster init` (node 1) and `join` (the others) leave them.
    const first = clusterPaths(this.nodes[0]!.dataDir);
    createClusterCa(first, 'test');
    const caKey = fs.readFileSync(first.caKey, 'utf8');
    const caPem = fs.readFileSync(first.caCert, 'utf8');
    for (const n of this.nodes) {
      const k = newNodeKey();
      writeNodeIdentity(clusterPaths(n.dataDir), k.privatePem, issueNodeCertificate(caKey, caPem, n.nodeId, k.publicPem), caPem);
    }
    for (const n of this.nodes) await n.start();
  }

  /** An HTTP view of the one issuer whose requests all go to node `i`. */
  via(i: number): NodeView {
    const node = this.nodes[i]!;
    const ca = fs.readFileSync(this.tlsCa);
    const agent = new Agent({
      connect: (opts: any, cb: any) => {
        const socket = tls.connect({ host: node.ip, port: this.port, servername: ISSUER_HOST, ca, ALPNProtocols: ['http/1.1'] });
        socket.once('secureConnect', () => cb(null, socket));
        socket.once('error', (e) => cb(e, null));
        return socket;
      },
    });
    this.agents.push(agent);
    const issuer = () => this.issuer;
    return {
      get issuer() {
        return issuer();
      },
      http: async (p, init = {}) => {
        const res = await request(p.startsWith('https:') ? p : issuer() + p, { dispatcher: agent, ...init });
        return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
      },
      // openid-client needs a fetch
      ...({ fetch: (url: string, init: object) => undiciFetch(url, { ...init, dispatcher: agent }) } as object),
    } as NodeView;
  }

  /** openid-client configuration for `clientId` whose requests go to node `i`. */
  rp(i: number, clientId: string, auth: oidc.ClientAuth): Promise<oidc.Configuration> {
    const view = this.via(i) as NodeView & { fetch: (u: string, init: object) => Promise<unknown> };
    return oidc.discovery(new URL(this.issuer), clientId, undefined, auth, {
      [oidc.customFetch]: (url: string, init: object) => view.fetch(url, init) as Promise<Response>,
    } as oidc.DiscoveryRequestOptions);
  }

  /** Gossip exchanges node `i` completed with node `j` (`kiwi_gossip_rounds_total`, result ok). */
  async okRounds(i: number, j: number): Promise<number> {
    const m = await this.nodes[i]!.metrics.registry.getSingleMetric('kiwi_gossip_rounds_total')?.get();
    return m?.values.find((v) => v.labels.peer === this.nodes[j]!.nodeId && v.labels.result === 'ok')?.value ?? 0;
  }

  /**
   * Resolves after node `i` completed two more exchanges with node `j` than `since`: whatever
   * node `i` had written before `since` was read has then been pushed to `j`. (The first may have
   * started before the write; the second started after it.) "Within two intervals", counted
   * in the rounds themselves rather than in wall-clock time, which a busy machine stretches.
   */
  async twoRoundsAfter(i: number, j: number, since: number): Promise<void> {
    await until(`two gossip rounds of node ${i + 1} with node ${j + 1}`, async () => (await this.okRounds(i, j)) >= since + 2);
  }

  /** Points an existing openid-client configuration at node `i`. */
  routeTo(config: oidc.Configuration, i: number): void {
    const view = this.via(i) as NodeView & { fetch: (u: string, init: object) => Promise<unknown> };
    config[oidc.customFetch] = ((url: string, init: object) => view.fetch(url, init)) as never;
  }

  async close(): Promise<void> {
    for (const n of this.nodes) await n.stop().catch(() => undefined);
    for (const a of this.agents) await a.close().catch(() => undefined);
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Polls `ok` until it holds or `ms` passes (never a fixed sleep). */
export async function until(what: string, ok: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await Promise.resolve().then(ok).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
