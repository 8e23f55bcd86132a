// Node-to-node HTTPS with mutual TLS on the private bridge (`[gossip] listen_addr`), separate
// from the public listener so browsers are never asked for a certificate. Both sides present
// their node certificate and trust only the cluster CA; on top of that every request and reply
// is a signed envelope (envelope.ts) whose sender must be the TLS peer.
//
// Paths (all POST, JSON):
//   /cluster/v1/join      a new node with a one-time token asks for its certificate (no client
//                         certificate yet: the token authenticates it); answered on the CA node
//   /cluster/v1/gossip    push/pull of deltas (gossip.ts)
//   /cluster/v1/internal/...  forwarded operations of the distributed modes (modes/); 404 when
//                         the mode does not use them, as in the reference

import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { EnvelopeRejected, Sealer, openEnvelope, type Envelope, type RejectReason } from './envelope.js';
import { nodeIdOf, type NodeIdentity } from './pki.js';
import { peerHost } from '../config/cluster.js';
import { listenOn } from '../server/listen.js';

export const PATHS = {
  join: '/cluster/v1/join',
  gossip: '/cluster/v1/gossip',
  consume: '/cluster/v1/internal/consume',
  find: '/cluster/v1/internal/find',
  vote: '/cluster/v1/internal/vote',
} as const;

const MAX_BODY = 64 * 1024 * 1024;

export type Handler = (env: Envelope<any>) => Promise<unknown>;

export interface JoinRequest {
  node_id: string;
  public_key: string;
  secret: string;
}
export interface JoinReply {
  certificate: string;
  ca: string;
  /** The cluster's cookie signing keys (one per line). */
  cookie_keys?: string;
  /** Kiwi ID's OAuth2 client secret at (the replicated) Kanidm. */
  upstream_oauth2_secret?: string;
  /** Kanidm's idm_admin and admin passwords (the joining node's Kanidm becomes a replica). */
  admin_passwords?: { idm_admin?: string; admin?: string };
}
export type JoinHandler = (req: JoinRequest) => Promise<JoinReply>;

export interface TransportOptions {
  identity: NodeIdentity;
  host: string;
  port: number;
  allowedNodeIds: ReadonlySet<string>;
  maxAgeMs: number;
  maxDriftMs: number;
  log: Logger;
  onReject: (reason: RejectReason | 'no_client_certificate') => void;
  now?: () => number;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export class ClusterServer {
  private readonly server: https.Server;
  private readonly handlers = new Map<string, Handler>();
  private joinHandler: JoinHandler | null = null;
  private readonly sealer: Sealer;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly o: TransportOptions) {
    this.sealer = new Sealer(o.identity);
    this.server = https.createServer({
      key: o.identity.keyPem,
      cert: o.identity.certPem,
      ca: o.identity.caPem,
      // Verified, but not required at the handshake: the join path is for nodes without a
      // certificate yet. Every other path refuses unless the client certificate verified.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      requestTimeout: 60_000,
      headersTimeout: 20_000,
    });
    this.server.on('request', (req, res) => void this.onRequest(req, res));
    this.server.on('secureConnection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('tlsClientError', (err) => o.log.debug({ err_message: err.message }, 'cluster TLS handshake failed'));
  }

  handle(path: string, h: Handler): void {
    this.handlers.set(path, h);
  }

  handleJoin(h: JoinHandler): void {
    this.joinHandler = h;
  }

  listen(): Promise<AddressInfo> {
    return listenOn(this.server, this.o.port, this.o.host);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    try {
      if (req.method !== 'POST') throw new HttpError(405, 'POST only');
      if (path === PATHS.join) {
        if (!this.joinHandler) throw new HttpError(404, 'this node does not hold the cluster CA');
        const body = JSON.parse((await readBody(req)).toString('utf8')) as JoinRequest;
        return send(res, 200, await this.joinHandler(body));
      }
      const handler = this.handlers.get(path);
      if (!handler) throw new HttpError(404, 'not found');
      const socket = req.socket as TLSSocket;
      const peerCert = socket.getPeerX509Certificate?.();
      if (!socket.authorized || !peerCert) {
        this.o.onReject('no_client_certificate');
        throw new HttpError(401, 'a cluster node certificate is required');
      }
      const peer = nodeIdOf(peerCert);
      const raw = JSON.parse((await readBody(req)).toString('utf8'));
      const env = await openEnvelope(raw, {
        ca: this.o.identity.ca,
        allowedNodeIds: this.o.allowedNodeIds,
        maxAgeMs: this.o.maxAgeMs,
        maxDriftMs: this.o.maxDriftMs,
        self: this.o.identity.nodeId,
        type: path,
        expectedFrom: peer,
        now: this.o.now,
      });
      const reply = await handler(env);
      send(res, 200, await this.sealer.seal(`${path}#reply`, env.from, reply));
    } catch (err) {
      if (err instanceof EnvelopeRejected) {
        this.o.onReject(err.reason);
        this.o.log.warn({ reason: err.reason, err_message: err.message, path }, 'cluster envelope rejected');
        return send(res, 403, { error: 'rejected', reason: err.reason });
      }
      if (err instanceof HttpError) return send(res, err.status, { error: err.message });
      if (err instanceof SyntaxError) return send(res, 400, { error: 'body is not JSON' });
      this.o.log.error({ err_message: (err as Error).message, path }, 'cluster request failed');
      send(res, 500, { error: 'internal error' });
    }
  }
}

export class PeerCallError extends Error {
  constructor(
    readonly peer: string,
    message: string,
    readonly status?: number,
  ) {
    super(`${peer}: ${message}`);
    this.name = 'PeerCallError';
  }
}

/** Calls other nodes: mutual TLS with the node certificate, signed envelopes both ways. */
export class ClusterClient {
  private readonly agent: Agent;
  private readonly sealer: Sealer;

  constructor(private readonly o: Omit<TransportOptions, 'host' | 'port' | 'log'> & { localAddress?: string }) {
    this.sealer = new Sealer(o.identity);
    this.agent = new Agent({
      connect: {
        ca: o.identity.caPem,
        cert: o.identity.certPem,
        key: o.identity.keyPem,
        minVersion: 'TLSv1.2',
      },
      // Calls leave from this node's cluster address, so peers and firewalls see who calls.
      ...(o.localAddress && net.isIP(o.localAddress) ? { localAddress: o.localAddress } : {}),
      keepAliveTimeout: 10_000,
    });
  }

  /**
   * POSTs `body` sealed for the node at `url` (its node_id is the URL's host) and returns the
   * opened reply body. Throws PeerCallError for transport/HTTP failures and EnvelopeRejected for
   * a reply that does not verify.
   */
  async call<R>(url: string, path: string, body: unknown, timeoutMs: number): Promise<R> {
    const node = peerHost(url);
    const sealed = await this.sealer.seal(path, node, body);
    let res;
    try {
      res = await request(url + path, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(sealed),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      throw new PeerCallError(node, (e as Error).message);
    }
    const text = await res.body.text().catch((e: Error) => {
      throw new PeerCallError(node, e.message);
    });
    if (res.statusCode !== 200) throw new PeerCallError(node, `HTTP ${res.statusCode} ${text.slice(0, 200)}`, res.statusCode);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new PeerCallError(node, 'reply is not JSON');
    }
    try {
      const env = await openEnvelope<R>(raw, {
        ca: this.o.identity.ca,
        allowedNodeIds: this.o.allowedNodeIds,
        maxAgeMs: this.o.maxAgeMs,
        maxDriftMs: this.o.maxDriftMs,
        self: this.o.identity.nodeId,
        type: `${path}#reply`,
        expectedFrom: node,
        now: this.o.now,
      });
      return env.body;
    } catch (e) {
      if (e instanceof EnvelopeRejected) this.o.onReject(e.reason);
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** `kiwi-id cluster join`: asks the CA node for a certificate, pinning the CA from the token. */
export async function requestJoin(url: string, caDer: Buffer, req: JoinRequest, timeoutMs = 15_000): Promise<JoinReply> {
  const caPem = new X509Certificate(caDer).toString();
  const agent = new Agent({ connect: { ca: caPem, minVersion: 'TLSv1.2' } });
  try {
    const res = await request(url + PATHS.join, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(req),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    let out: any;
    try {
      out = JSON.parse(text);
    } catch {
      throw new Error(`${url}: HTTP ${res.statusCode}: reply is not JSON`);
    }
    if (res.statusCode !== 200) throw new Error(`${url}: join refused: ${out?.error ?? `HTTP ${res.statusCode}`}`);
    if (typeof out.certificate !== 'string' || typeof out.ca !== 'string') throw new Error(`${url}: join reply lacks the certificate`);
    return out;
  } finally {
    await agent.close();
  }
}
