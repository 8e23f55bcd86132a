// Reverse proxy from the public listener to Kanidm on loopback.
//
// Why the headers are rewritten rather than appended to: Kanidm runs with
// trust_x_forward_for, so whatever X-Forwarded-For it receives becomes the
// client address in its audit log and rate limits. The wrapper is the edge,
// so it states what it saw and drops anything the client claimed.
import type { Agent } from 'node:https';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import { sendErrorPage } from './error-page.js';

export interface UpstreamProxyOptions {
  /** Origin of Kanidm, e.g. https://127.0.0.1:8443 */
  target: string;
  /** Keep-alive pool with the upstream CA pinned (see upstream/tls.ts). */
  agent: Agent;
  /** Idle time on the upstream socket before answering 504. */
  timeoutMs: number;
  maxBodySize: number;
  /** False while Kanidm is down: answer 503 at once instead of trying. */
  isHealthy: () => boolean;
  log: Logger;
  retryAfterSeconds?: number;
}

// RFC 9110 §7.6.1 connection-specific headers, plus the legacy proxy ones.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade'];
const CLIENT_CLAIMS = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip'];

/** Socket errors that mean the upstream process went away (crash, restart). */
const UPSTREAM_GONE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

class BodyTooLarge extends Error {
  readonly code = 'EBODYLIMIT';
}

/** Counts bytes of a streamed (e.g. chunked) body and fails past the limit. */
class ByteLimit extends Transform {
  private seen = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
    this.seen += chunk.length;
    if (this.seen > this.limit) cb(new BodyTooLarge(`request body exceeds ${this.limit} bytes`));
    else cb(null, chunk);
  }
}

/** Hop-by-hop header names of one message: the fixed list plus those its Connection header names. */
function hopByHop(h: IncomingHttpHeaders): string[] {
  const named = String(h.connection ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  return [...HOP_BY_HOP, ...named];
}

/** Rewrites req.headers in place into what Kanidm should see. */
export function forwardHeaders(req: IncomingMessage, isUpgrade: boolean): void {
  const h = req.headers;
  for (const name of hopByHop(h)) {
    if (isUpgrade && (name === 'upgrade' || name === 'connection')) continue;
    delete h[name];
  }
  for (const name of CLIENT_CLAIMS) delete h[name];
  const remote = req.socket.remoteAddress ?? '';
  h['x-forwarded-for'] = remote.startsWith('::ffff:') ? remote.slice(7) : remote;
  h['x-forwarded-proto'] = 'https';
  if (h.host) h['x-forwarded-host'] = h.host;
}

export class UpstreamProxy {
  private readonly proxy: ProxyServer;
  /** Outgoing request per incoming one, so a rejected body can abort it. */
  private readonly inFlight = new WeakMap<IncomingMessage, ClientRequest>();

  constructor(private readonly o: UpstreamProxyOptions) {
    this.proxy = createProxyServer({
      target: o.target,
      agent: o.agent,
      secure: true, // never off: the agent pins Kanidm's CA
      changeOrigin: false, // Kanidm's origin checks and cookies need the public Host
      xfwd: false, // set by forwardHeaders, see the top of this file
      ws: true,
    });
    this.proxy.on('proxyReq', (proxyReq, req) => {
      this.inFlight.set(req, proxyReq);
      proxyReq.setTimeout(o.timeoutMs, () => {
        proxyReq.destroy(Object.assign(new Error('upstream timed out'), { code: 'ETIMEDOUT' }));
      });
    });
    this.proxy.on('proxyRes', (proxyRes, _req, res) => {
      for (const name of hopByHop(proxyRes.headers)) delete proxyRes.headers[name];
      // The client connection's fate is ours to state, not Kanidm's: close it
      // when the client asked to or when draining (front door sets the header).
      const close = !res.shouldKeepAlive || res.getHeader('connection') === 'close';
      proxyRes.headers.connection = close ? 'close' : 'keep-alive';
    });
  }

  /** Serves one proxied HTTP request; never throws, every failure becomes a clean response. */
  web(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    if (!this.o.isHealthy()) return this.unavailable(req, res, requestId);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.o.maxBodySize) {
      // Close afterwards: the unread body would otherwise be parsed as the next request.
      res.setHeader('connection', 'close');
      return sendErrorPage(req, res, 413, `Request body is larger than ${this.o.maxBodySize} bytes.`, { requestId });
    }
    forwardHeaders(req, false);
    req.headers['x-request-id'] = requestId;
    const limited = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] !== undefined;
    const buffer = limited ? req.pipe(new ByteLimit(this.o.maxBodySize)) : undefined;
    buffer?.on('error', (err) => this.fail(req, res, requestId, err));
    this.proxy.web(req, res, { buffer }, (err) => this.fail(req, res, requestId, err));
  }

  /** WebSocket and other upgrades. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string): void {
    if (!this.o.isHealthy()) {
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nRetry-After: ${this.retryAfter}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    forwardHeaders(req, true);
    req.headers['x-request-id'] = requestId;
    this.proxy.ws(req, socket, head, {}, (err) => {
      this.o.log.warn({ req_id: requestId, err_code: (err as NodeJS.ErrnoException).code }, 'upgrade proxy failed');
      socket.destroy();
    });
  }

  close(): void {
    this.proxy.close();
  }

  private get retryAfter(): number {
    return this.o.retryAfterSeconds ?? 2;
  }

  private unavailable(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    sendErrorPage(req, res, 503, 'The identity service is starting or restarting. Please retry shortly.', {
      retryAfterSeconds: this.retryAfter,
      requestId,
    });
  }

  private fail(req: IncomingMessage, res: ServerResponse, requestId: string, err: Error): void {
    // Already answered (e.g. 413, then the aborted upstream call fails) or the client is gone.
    if (res.writableEnded || res.destroyed) return;
    const code = (err as NodeJS.ErrnoException).code;
    this.o.log.warn({ req_id: requestId, err_code: code, err_message: err.message }, 'proxy error');
    if (err instanceof BodyTooLarge) {
      res.setHeader('connection', 'close');
      sendErrorPage(req, res, 413, err.message, { requestId });
      this.inFlight.get(req)?.destroy();
      return;
    }
    if (code === 'ETIMEDOUT') {
      return sendErrorPage(req, res, 504, 'The identity service did not answer in time.', { requestId });
    }
    // The health probe may not have noticed a crash yet: a refused or reset
    // connection means the process is gone or going, which is "unavailable,
    // retry", not "broken". TLS and protocol errors stay 502.
    if (!this.o.isHealthy() || UPSTREAM_GONE.has(code ?? '')) return this.unavailable(req, res, requestId);
    sendErrorPage(req, res, 502, 'The identity service gave an invalid response.', { requestId });
  }
}
