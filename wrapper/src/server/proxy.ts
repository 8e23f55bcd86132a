// Reverse proxy from the public listener to Kanidm on loopback.
//
// Why the headers are rewritten rather than appended to: Kanidm runs with
// trust_x_forward_for, so whatever X-Forwarded-For it receives becomes the
// client address in its audit log and rate limits. The wrapper is the edge,
// so it states what it saw and drops anything the client claimed.
//
// Why undici's dispatcher and not http-proxy (or node:https): each proxied
// request is one dispatch on undici's keep-alive pool, answered straight
// into the client response from undici's raw header list and body chunks:
// no second IncomingMessage, no per-request options object, no pipe() of
// streams. It was the cheapest of the three per request (README,
// Benchmarks), and the connection pool is what keeps TLS handshakes with
// Kanidm to one per pooled socket.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { urlHost } from '../config/url-host.js';
import { sendErrorPage } from './error-page.js';

export interface UpstreamProxyOptions {
  /** Origin of Kanidm, e.g. https://127.0.0.1:8443 */
  target: string;
  /** Keep-alive pool with the upstream CA pinned (see upstream/tls.ts). */
  agent: Dispatcher;
  /** Idle time on the upstream socket before answering 504. */
  timeoutMs: number;
  maxBodySize: number;
  /** False while Kanidm is down: answer 503 at once instead of trying. */
  isHealthy: () => boolean;
  log: Logger;
  retryAfterSeconds?: number;
}

// RFC 9110 §7.6.1 connection-specific headers, plus the legacy proxy ones.
// Transfer-Encoding is framing of one hop too: each side chooses its own.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'transfer-encoding'];
const CLIENT_CLAIMS = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip'];
// Never forwarded upstream: the client's own Expect (Node answers 100-continue
// itself), the Host (set once below) and the id the wrapper assigns.
const REQUEST_DROP = new Set([...HOP_BY_HOP, ...CLIENT_CLAIMS, 'expect', 'host', 'x-request-id']);
const RESPONSE_DROP = new Set(HOP_BY_HOP);

/** Socket errors that mean the upstream process went away (crash, restart). */
const UPSTREAM_GONE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const UPSTREAM_TIMEOUT = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

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

/** Names a message's Connection header lists: hop-by-hop for that message only. */
function connectionNamed(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const named = new Set<string>();
  for (const token of String(value).split(',')) {
    const t = token.trim().toLowerCase();
    if (t) named.add(t);
  }
  return named;
}

/**
 * The header list Kanidm should see, as undici's flat [name, value, ...]
 * array: the client's end-to-end headers (case and order kept), then the
 * public Host and what the wrapper itself saw.
 */
export function upstreamHeaders(req: IncomingMessage, requestId: string): string[] {
  const raw = req.rawHeaders;
  const named = connectionNamed(req.headers.connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (REQUEST_DROP.has(lower) || named?.has(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  const remote = req.socket?.remoteAddress ?? '';
  const host = req.headers.host;
  if (host) out.push('host', host, 'x-forwarded-host', host);
  out.push('x-forwarded-for', remote.startsWith('::ffff:') ? remote.slice(7) : remote, 'x-forwarded-proto', 'https', 'x-request-id', requestId);
  return out;
}

/**
 * Kanidm's response headers for the client as a flat [name, value, ...]
 * list, less the hop-by-hop ones. Takes undici's parsed form (lower-case
 * names, repeated headers such as Set-Cookie as arrays, which Node writes
 * one line each).
 */
function clientHeaders(parsed: Record<string, string | string[] | undefined>): Array<string | string[]> {
  const named = parsed.connection === undefined ? null : connectionNamed(parsed.connection);
  const out: Array<string | string[]> = [];
  for (const name in parsed) {
    if (RESPONSE_DROP.has(name) || named?.has(name)) continue;
    out.push(name, parsed[name]!);
  }
  return out;
}

/** The request target as an origin-form path ("/x?y"), or null when there is none to forward. */
function originForm(url: string | undefined): string | null {
  if (!url) return null;
  if (url.charCodeAt(0) === 47 /* / */) return url;
  // absolute-form (RFC 9112 §3.2.2): forward its path; the Host header names the origin.
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.pathname + u.search : null;
  } catch {
    return null;
  }
}

type Controller = Dispatcher.DispatchController;
/** undici accepts `servername` per request (it keys its TLS connections by it) but does not type it. */
type UpstreamRequest = Dispatcher.DispatchOptions & { servername: string };

export class UpstreamProxy {
  /** One TLS name for every request, whatever Host the client sent (see upstream/tls.ts proxyAgent). */
  private readonly servername: string;

  constructor(private readonly o: UpstreamProxyOptions) {
    this.servername = urlHost(o.target);
  }

  /** Serves one proxied HTTP request; never throws, every failure becomes a clean response. */
  web(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    if (!this.o.isHealthy()) return this.unavailable(req, res, requestId);
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > this.o.maxBodySize) {
      // Close afterwards: the unread body would otherwise be parsed as the next request.
      res.setHeader('connection', 'close');
      return sendErrorPage(req, res, 413, `Request body is larger than ${this.o.maxBodySize} bytes.`, { requestId });
    }
    const path = originForm(req.url);
    if (path === null) return sendErrorPage(req, res, 400, 'Request target not supported.', { requestId });
    // A body is what the client framed as one: a length, or chunked (counted as it streams).
    const chunked = length === undefined && req.headers['transfer-encoding'] !== undefined;
    let body: NodeJS.ReadableStream | null = null;
    if (chunked) {
      const limited = new ByteLimit(this.o.maxBodySize);
      req.on('error', (err) => limited.destroy(err));
      body = req.pipe(limited);
    } else if (length !== undefined && length !== '0') body = req;

    const handler = new ResponseWriter(this, req, res, requestId);
    try {
      const options: UpstreamRequest = {
        ...this.requestTo(req, path, requestId),
        body: body as Dispatcher.DispatchOptions['body'],
        bodyTimeout: this.o.timeoutMs,
      };
      this.o.agent.dispatch(options, handler);
    } catch (err) {
      // undici refuses what it cannot send (e.g. a header it considers invalid).
      this.fail(req, res, requestId, err as Error);
    }
  }

  /** The parts of the request to Kanidm every proxied request shares. */
  private requestTo(req: IncomingMessage, path: string, requestId: string): UpstreamRequest {
    return {
      origin: this.o.target,
      path,
      method: req.method as Dispatcher.HttpMethod,
      headers: upstreamHeaders(req, requestId),
      servername: this.servername,
      headersTimeout: this.o.timeoutMs,
    };
  }

  /** WebSocket and other upgrades: a 101 from Kanidm joins the two sockets; anything else is relayed and closed. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string): void {
    const refuse = (status: string) => socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    if (!this.o.isHealthy()) {
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nRetry-After: ${this.retryAfter}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const path = originForm(req.url);
    const protocol = req.headers.upgrade;
    if (path === null || !protocol) return void refuse('400 Bad Request');
    try {
      const options: UpstreamRequest = { ...this.requestTo(req, path, requestId), upgrade: protocol };
      this.o.agent.dispatch(
        options,
        new UpgradeRelay(socket, head, (err) => {
          this.o.log.warn({ req_id: requestId, err_code: (err as NodeJS.ErrnoException).code }, 'upgrade proxy failed');
          if (socket.writable) refuse('502 Bad Gateway');
          else socket.destroy();
        }),
      );
    } catch (err) {
      this.o.log.warn({ req_id: requestId, err_message: (err as Error).message }, 'upgrade refused');
      refuse('400 Bad Request');
    }
  }

  close(): void {
    // The pool belongs to the caller (it may serve other users); nothing of our own to release.
  }

  private get retryAfter(): number {
    return this.o.retryAfterSeconds ?? 2;
  }

  unavailable(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    sendErrorPage(req, res, 503, 'The identity service is starting or restarting. Please retry shortly.', {
      retryAfterSeconds: this.retryAfter,
      requestId,
    });
  }

  fail(req: IncomingMessage, res: ServerResponse, requestId: string, err: Error): void {
    // Already answered (e.g. 413, then the aborted upstream call fails) or the client is gone.
    if (res.writableEnded || res.destroyed) return;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    this.o.log.warn({ req_id: requestId, err_code: code, err_message: err.message }, 'proxy error');
    if (err instanceof BodyTooLarge) {
      res.setHeader('connection', 'close');
      return sendErrorPage(req, res, 413, err.message, { requestId });
    }
    if (UPSTREAM_TIMEOUT.has(code)) {
      return sendErrorPage(req, res, 504, 'The identity service did not answer in time.', { requestId });
    }
    // The health probe may not have noticed a crash yet: a refused or reset
    // connection means the process is gone or going, which is "unavailable,
    // retry", not "broken". TLS and protocol errors stay 502.
    if (!this.o.isHealthy() || UPSTREAM_GONE.has(code)) return this.unavailable(req, res, requestId);
    sendErrorPage(req, res, 502, 'The identity service gave an invalid response.', { requestId });
  }
}

/** undici handler that writes Kanidm's answer into the client's response as it arrives. */
class ResponseWriter implements Dispatcher.DispatchHandler {
  private controller: Controller | null = null;
  private readonly onClientGone = () => {
    // The client left before the end: stop reading Kanidm's answer.
    if (!this.res.writableFinished) this.controller?.abort(new Error('client closed'));
  };
  private readonly onDrain = () => this.controller?.resume();

  constructor(
    private readonly proxy: UpstreamProxy,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly requestId: string,
  ) {
    res.once('close', this.onClientGone);
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new Error('client closed'));
  }

  onResponseStart(controller: Controller, statusCode: number, parsed: Record<string, string | string[]>, statusMessage?: string): void {
    const res = this.res;
    if (res.destroyed) return controller.abort(new Error('client closed'));
    const headers = clientHeaders(parsed);
    // The client connection's fate is ours to state, not Kanidm's: close it
    // when the client asked to or when draining (the front door sets the header).
    headers.push('connection', !res.shouldKeepAlive || res.getHeader('connection') === 'close' ? 'close' : 'keep-alive', 'x-request-id', this.requestId);
    // (Node's types omit array values in the flat form; it writes them as repeated lines.)
    if (statusMessage) res.writeHead(statusCode, statusMessage, headers as string[]);
    else res.writeHead(statusCode, headers as string[]);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    this.res.off('close', this.onClientGone);
    this.res.end();
  }

  onResponseError(_controller: Controller, err: Error): void {
    this.res.off('close', this.onClientGone);
    this.proxy.fail(this.req, this.res, this.requestId, err);
  }
}

/** undici handler for an upgrade: relays the 101 and splices the sockets, or relays a refusal. */
class UpgradeRelay implements Dispatcher.DispatchHandler {
  constructor(
    private readonly client: Duplex,
    private readonly head: Buffer,
    private readonly onFailure: (err: Error) => void,
  ) {}

  onRequestStart(controller: Controller): void {
    if (this.client.destroyed) controller.abort(new Error('client closed'));
    this.client.once('close', () => controller.abort(new Error('client closed')));
  }

  onRequestUpgrade(controller: Controller, statusCode: number, _headers: unknown, upstream: Duplex): void {
    const client = this.client;
    const raw = (controller as { rawHeaders?: Buffer[] }).rawHeaders ?? [];
    let head = `HTTP/1.1 ${statusCode} Switching Protocols\r\n`;
    for (let i = 0; i < raw.length; i += 2) head += `${raw[i]!.toString('latin1')}: ${raw[i + 1]!.toString('latin1')}\r\n`;
    client.write(head + '\r\n');
    if (this.head.length) upstream.write(this.head);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', close).on('close', close);
    client.on('error', close).on('close', close);
    upstream.pipe(client);
    client.pipe(upstream);
  }

  // Kanidm answered without switching: pass its answer on and close.
  onResponseStart(_controller: Controller, statusCode: number, parsed: Record<string, string | string[]>, statusMessage?: string): void {
    const h = clientHeaders(parsed);
    let head = `HTTP/1.1 ${statusCode} ${statusMessage ?? ''}\r\n`;
    for (let i = 0; i < h.length; i += 2) for (const v of ([] as string[]).concat(h[i + 1]!)) head += `${h[i]}: ${v}\r\n`;
    this.client.write(head + 'Connection: close\r\n\r\n');
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    this.client.write(chunk);
  }

  onResponseEnd(): void {
    this.client.end();
  }

  onResponseError(_controller: Controller, err: Error): void {
    this.onFailure(err);
  }
}
