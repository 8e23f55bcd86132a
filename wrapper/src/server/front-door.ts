// The public HTTPS listener (listen_addr). It owns a few paths itself
// (health, metrics, the KiwiStack OIDC issuer) and proxies everything else to
// Kanidm. It also owns the process-level behaviours around connections:
// request ids and logs, TLS reload, and draining on shutdown.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { BatchedLog, redactUrl } from '../telemetry/log.js';
import { sendErrorPage } from './error-page.js';
import { InFlight } from './in-flight.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { UpstreamProxy } from './proxy.js';
import { listenOn } from './listen.js';

/** A wrapper-owned group of paths, e.g. the OIDC issuer. */
export interface Route {
  name: string; // metrics label
  matches: (pathname: string) => boolean;
  /** `pathname` is the request path without the query, as matched. */
  handle: (req: IncomingMessage, res: ServerResponse, pathname: string) => void | Promise<void>;
}

export interface FrontDoorOptions {
  host: string;
  port: number;
  tlsCert: string;
  tlsKey: string;
  maxHeaderSize: number;
  drainTimeoutMs: number;
  log: Logger;
  metrics: Metrics;
  /** The /metrics text; default: this process's registry (a cluster worker asks the primary for all processes'). */
  metricsText?: () => Promise<string>;
  proxy: UpstreamProxy;
  /** Readiness: true while the upstream is healthy. */
  isReady: () => boolean;
  /** Why not, for the /readyz body (e.g. "upstream crash-looping"). */
  notReadyReason?: () => string;
  routes?: Route[];
  /** Checks before routing; a guard that answers the request returns true (e.g. the sign-in rate limit). */
  guards?: Guard[];
}

export type Guard = (req: IncomingMessage, res: ServerResponse, pathname: string, requestId: string) => boolean;

const HEALTH_PATHS = new Set(['/healthz', '/readyz', '/metrics']);
/** On drain, how long open connections may still bring a request (answered with Connection: close). */
const LAME_DUCK_MS = 500;

function readTls(certPath: string, keyPath: string) {
  return { cert: readFileSync(certPath), key: readFileSync(keyPath) };
}

function pathnameOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q < 0 ? raw : raw.slice(0, q);
}

export class FrontDoor {
  private readonly server: https.Server;
  private readonly sockets = new InFlight<Socket>();
  /** Requests not yet answered; drain waits for these. */
  private readonly pending = new InFlight<ServerResponse>();
  private draining = false;
  /** The per-request lines (see BatchedLog for why they are not written through `log`). */
  private readonly accessLog: BatchedLog;

  constructor(private readonly o: FrontDoorOptions) {
    this.accessLog = new BatchedLog(o.log);
    this.server = https.createServer({
      ...readTls(o.tlsCert, o.tlsKey),
      maxHeaderSize: o.maxHeaderSize, // larger headers get Node's 431
      minVersion: 'TLSv1.2',
      requestTimeout: 60_000, // whole request incl. body: slow-loris bound
      headersTimeout: 20_000,
      keepAliveTimeout: 5_000,
    });
    this.server.on('request', (req, res) => this.onRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.server.on('secureConnection', (socket: Socket) => {
      const slot = this.sockets.add(socket);
      socket.on('close', () => this.sockets.remove(slot, socket));
    });
    // TLS handshake failures and garbage are the client's problem; never crash on them.
    this.server.on('tlsClientError', (err) => o.log.debug({ err_code: (err as NodeJS.ErrnoException).code }, 'TLS handshake failed'));
    this.server.on('clientError', (err, socket) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (socket.writable && code === 'HPE_HEADER_OVERFLOW') {
        socket.end('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } else if (socket.writable) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } else {
        socket.destroy();
      }
    });
  }

  listen(): Promise<AddressInfo> {
    return listenOn(this.server, this.o.port, this.o.host);
  }

  /** SIGHUP: new connections use the certificate now on disk; a bad file keeps the old one. */
  reloadTls(): boolean {
    try {
      this.server.setSecureContext(readTls(this.o.tlsCert, this.o.tlsKey));
      this.o.log.info({ tls_cert: this.o.tlsCert }, 'TLS certificate reloaded');
      return true;
    } catch (err) {
      this.o.log.error({ err_message: (err as Error).message }, 'TLS reload failed; keeping the current certificate');
      return false;
    }
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Stops accepting, lets in-flight requests finish (up to drainTimeoutMs),
   * then closes what is left. Resolves with the number of requests cut off.
   */
  async drain(): Promise<number> {
    this.draining = true;
    // Responses still to come tell their keep-alive clients to reconnect elsewhere.
    for (const res of this.pending) if (!res.headersSent) res.setHeader('connection', 'close');
    // Stop accepting, but do not close idle keep-alive connections yet: a
    // client may already have sent its next request on one (bytes on the
    // wire, not parsed). For a short grace those requests are still answered,
    // with `Connection: close`, so busy clients leave cleanly; only what is
    // still idle afterwards is closed. (http.Server#close would close idle
    // connections at once and cut those requests, hence tls.Server's close.)
    const closed = new Promise<void>((r) => tls.Server.prototype.close.call(this.server, () => r()));
    const graceEnd = Date.now() + Math.min(LAME_DUCK_MS, this.o.drainTimeoutMs);
    while (this.sockets.size > 0 && Date.now() < graceEnd) await new Promise((r) => setTimeout(r, 20));
    this.server.closeIdleConnections();
    const deadline = Date.now() + this.o.drainTimeoutMs;
    while (this.pending.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      this.server.closeIdleConnections();
    }
    const cut = this.pending.size;
    if (cut > 0) this.o.log.warn({ in_flight: cut }, 'drain timeout: closing remaining connections');
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy(); // upgraded (WebSocket) sockets are not tracked by Node
    await closed;
    this.accessLog.close();
    return cut;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    const pathname = pathnameOf(req.url);
    const isHealth = HEALTH_PATHS.has(pathname);
    const owner = isHealth ? undefined : this.o.routes?.find((r) => r.matches(pathname));
    const route = isHealth ? pathname.slice(1) : (owner?.name ?? 'proxy');
    // Read now: once the client has closed its connection the socket no longer knows it.
    const remote = req.socket?.remoteAddress;
    const slot = this.pending.add(res);
    // The proxy puts the id in the header list it answers with (Node's fast
    // path for writeHead needs no header set before); everything else gets it here.
    if (route !== 'proxy') res.setHeader('x-request-id', requestId);
    // While draining, tell keep-alive clients to reconnect (to the next instance).
    if (this.draining) res.setHeader('connection', 'close');
    let counted = false;
    const done = () => {
      if (counted) return;
      counted = true;
      this.pending.remove(slot, res);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = res.writableFinished ? res.statusCode : 0; // 0: client went away
      this.o.metrics.requests.inc({ route, method: req.method ?? '', status: String(status) });
      this.o.metrics.duration.observe({ route }, seconds);
      if (!isHealth) {
        // Every field is the wrapper's own; the URL is the only one a client shapes, and it is redacted.
        this.accessLog.info(
          {
            req_id: requestId,
            method: req.method,
            url: redactUrl(req.url ?? ''),
            status,
            duration_ms: Math.round(seconds * 1e4) / 10,
            remote,
            route,
          },
          'request',
        );
      }
    };
    res.on('finish', done);
    res.on('close', done);

    const fail = (err: unknown) => {
      // A bug in a wrapper route must not take the process down or leak a stack.
      this.o.log.error({ req_id: requestId, err_message: (err as Error)?.message, stack: (err as Error)?.stack }, 'handler failed');
      sendErrorPage(req, res, 500, 'Internal error.', { requestId });
    };
    try {
      for (const guard of this.o.guards ?? []) if (guard(req, res, pathname, requestId)) return;
      switch (route) {
        case 'healthz':
          return this.plain(res, 200, 'ok\n');
        case 'readyz':
          return this.o.isReady() ? this.plain(res, 200, 'ready\n') : this.plain(res, 503, `${this.o.notReadyReason?.() ?? 'upstream not ready'}\n`);
        case 'metrics':
          void (this.o.metricsText ?? (() => this.o.metrics.registry.metrics()))().then((text) => {
            res.setHeader('content-type', this.o.metrics.registry.contentType);
            res.end(text);
          }, fail);
          return;
        case 'proxy':
          return this.o.proxy.web(req, res, requestId);
        default: {
          const p = owner!.handle(req, res, pathname);
          if (p) p.catch(fail);
        }
      }
    } catch (err) {
      fail(err);
    }
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (this.draining) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.o.proxy.upgrade(req, socket, head, randomUUID());
  }

  private plain(res: ServerResponse, status: number, body: string): void {
    res.statusCode = status;
    res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    res.end(body);
  }
}
