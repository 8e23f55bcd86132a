// The public listener and reverse proxy, against a plain HTTPS origin server.
// These tests pin down proxy behaviour (headers, limits, failures, drain,
// TLS); they make no claim about Kanidm - that is test/integration's job.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { createLogger } from '../../wrapper/src/telemetry/log.js';
import { localCertificate } from './harness/certs.js';
import { closeAll } from './harness/cleanup.js';
import { waitFor } from './harness/wait.js';
import { proxyAgent, upstreamTls } from '../../wrapper/src/upstream/tls.js';
import { createMetrics } from '../../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../../wrapper/src/server/proxy.js';
import { FrontDoor } from '../../wrapper/src/server/front-door.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-front-'));
const certs = (name: string) => localCertificate(root, name);

const originCerts = certs('origin');
const frontCerts = certs('front');
const strangerCerts = certs('stranger'); // same names, different CA

const logLines: string[] = [];
const log = createLogger({
  level: 'debug',
  destination: new Writable({
    write(chunk, _e, cb) {
      logLines.push(String(chunk));
      cb();
    },
  }),
});

// Origin replies held back until the test releases them (/hold, the rest of
// /stream): a test decides when the upstream answers instead of guessing how
// long a request takes to arrive.
const held = new Set<() => void>();
let heldSoFar = 0;
function hold(reply: () => void) {
  heldSoFar++;
  held.add(reply);
}
function releaseHeld(): number {
  const n = held.size;
  for (const reply of held) reply();
  held.clear();
  return n;
}

// The origin: echoes what it received; /hold and /stream wait for the test; upgrades echo bytes.
function makeOrigin(tls: { certPath: string; keyPath: string }) {
  const server = https.createServer({ cert: fs.readFileSync(tls.certPath), key: fs.readFileSync(tls.keyPath) });
  server.on('request', (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x');
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const reply = () => {
        res.setHeader('content-type', 'application/json');
        res.setHeader('keep-alive', 'timeout=5');
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
      };
      if (url.pathname === '/hold') hold(reply);
      else if (url.pathname === '/stream') {
        // First chunk now, the rest when released: a proxy that buffers would hold the first back.
        res.write('first;');
        hold(() => res.end('x'.repeat(4 * 1024 * 1024)));
      } else reply();
    });
  });
  server.on('upgrade', (_req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  return server;
}

let origin: https.Server;
let originPort: number;
let front: FrontDoor;
let frontUrl: string;
let healthy = true;
const metrics = createMetrics({ processMetrics: false });
const client = new Agent({ connect: { ca: fs.readFileSync(frontCerts.caPath) } });

interface FrontExtras {
  timeoutMs?: number;
  drainTimeoutMs?: number;
  tlsCert?: string;
  tlsKey?: string;
}

function makeFront(target: string, caPath: string, extra: FrontExtras = {}) {
  const proxy = new UpstreamProxy({
    target,
    agent: proxyAgent(upstreamTls(target, caPath)),
    timeoutMs: extra.timeoutMs ?? 2_000,
    maxBodySize: 1024,
    isHealthy: () => healthy,
    log,
  });
  return new FrontDoor({
    host: '127.0.0.1',
    port: 0,
    tlsCert: extra.tlsCert ?? frontCerts.certPath,
    tlsKey: extra.tlsKey ?? frontCerts.keyPath,
    maxHeaderSize: 4096,
    drainTimeoutMs: extra.drainTimeoutMs ?? 5_000,
    log,
    metrics,
    proxy,
    isReady: () => healthy,
    routes: [{ name: 'oidc', matches: (p) => p === '/boom', handle: () => { throw new Error('bug in route'); } }],
  });
}

before(async () => {
  origin = makeOrigin(originCerts);
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originPort = (origin.address() as AddressInfo).port;
  front = makeFront(`https://127.0.0.1:${originPort}`, originCerts.caPath);
  const a = await front.listen();
  frontUrl = `https://localhost:${a.port}`;
});

after(() =>
  closeAll(
    releaseHeld,
    () => front?.drain(),
    () => origin?.closeAllConnections(),
    () => origin && new Promise((r) => origin.close(r)),
    () => client.close(),
    () => fs.rmSync(root, { recursive: true, force: true }),
  ),
);

async function get(p: string, init: Parameters<typeof request>[1] = {}) {
  const res = await request(frontUrl + p, { dispatcher: client, ...init });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

test('forwards method, path, query, body and the public Host', async () => {
  const r = await get('/v1/self?x=1', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
  assert.equal(r.status, 200);
  const seen = JSON.parse(r.text);
  assert.equal(seen.method, 'POST');
  assert.equal(seen.url, '/v1/self?x=1');
  assert.equal(seen.body, 'hello');
  assert.equal(seen.headers.host, new URL(frontUrl).host);
  assert.match(String(r.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(seen.headers['x-request-id'], r.headers['x-request-id']);
});

test('X-Forwarded-* state what the wrapper saw; client claims are dropped', async () => {
  const r = await get('/', {
    headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6' },
  });
  const h = JSON.parse(r.text).headers;
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h['x-forwarded-host'], new URL(frontUrl).host);
  assert.equal(h.forwarded, undefined);
  assert.equal(h['x-real-ip'], undefined);
});

test('hop-by-hop headers, including ones named in Connection, are not forwarded', async () => {
  // node:https, not undici: undici owns the Connection header and would drop ours.
  const { status, body, headers } = await new Promise<{ status: number; body: string; headers: import('node:http').IncomingHttpHeaders }>((resolve, reject) => {
    const u = new URL(frontUrl);
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: Number(u.port),
        ca: fs.readFileSync(frontCerts.caPath),
        path: '/',
        agent: false,
        headers: { connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', te: 'trailers', 'proxy-authorization': 'Basic Zm9vOmJhcg==' },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
  const h = JSON.parse(body).headers;
  assert.equal(h['x-secret-hop'], undefined);
  assert.equal(h.te, undefined);
  assert.equal(h['proxy-authorization'], undefined);
  assert.equal(headers['keep-alive'], undefined, 'the origin\'s Keep-Alive header reached the client');
});

test('responses stream through: the first bytes arrive before the upstream finishes; large bodies pass', async () => {
  const res = await request(`${frontUrl}/stream`, { dispatcher: client });
  const it = res.body[Symbol.asyncIterator]();
  const first = await it.next();
  assert.match(String(first.value), /^first;/);
  // The origin has not finished its response yet: it waits for this release.
  assert.equal(releaseHeld(), 1, 'the rest of the body was still held at the origin');
  let size = Buffer.byteLength(String(first.value));
  for (let c = await it.next(); !c.done; c = await it.next()) size += (c.value as Buffer).length;
  assert.equal(size, 'first;'.length + 4 * 1024 * 1024);
});

test('body over max_body_size gets 413, declared or chunked', async () => {
  const declared = await get('/', { method: 'POST', body: 'x'.repeat(2048) });
  assert.equal(declared.status, 413);
  // A stream without a length goes out chunked.
  const chunks = Readable.from(Array.from({ length: 8 }, () => Buffer.alloc(512, 'y')));
  const chunked = await get('/', { method: 'POST', body: chunks });
  assert.equal(chunked.status, 413);
  assert.equal((await get('/')).status, 200, 'proxy still serves after rejecting');
});

test('headers over max_header_size get 431', async () => {
  const r = await get('/', { headers: { 'x-big': 'z'.repeat(8192) } });
  assert.equal(r.status, 431);
});

test('upstream unhealthy: 503 with Retry-After at once; JSON for JSON clients', async () => {
  healthy = false;
  try {
    const html = await get('/ui/login');
    assert.equal(html.status, 503);
    assert.equal(html.headers['retry-after'], '2');
    assert.match(html.text, /503 Service Unavailable/);
    const json = await get('/v1/self', { headers: { accept: 'application/json' } });
    assert.equal(JSON.parse(json.text).error, 'service_unavailable');
    assert.equal((await get('/readyz')).status, 503);
    assert.equal((await get('/healthz')).status, 200, 'liveness does not depend on the upstream');
  } finally {
    healthy = true;
  }
  assert.equal((await get('/readyz')).status, 200);
});

test('slow upstream: 504 after upstream_timeout, no hang', async (t) => {
  const slowFront = makeFront(`https://127.0.0.1:${originPort}`, originCerts.caPath, { timeoutMs: 200 });
  const a = await slowFront.listen();
  t.after(() => closeAll(releaseHeld, () => slowFront.drain()));
  // The origin never answers this one (until the test is over).
  const res = await request(`https://localhost:${a.port}/hold`, { dispatcher: client });
  assert.equal(res.statusCode, 504);
  assert.doesNotMatch(await res.body.text(), /at \w+ \(|node:internal/);
});

test('upstream port closed: 503 (process gone), never a reset', async () => {
  const dead = https.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const port = (dead.address() as AddressInfo).port;
  await new Promise((r) => dead.close(r));
  const f = makeFront(`https://127.0.0.1:${port}`, originCerts.caPath);
  const a = await f.listen();
  try {
    const res = await request(`https://localhost:${a.port}/`, { dispatcher: client });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '2');
    await res.body.text();
  } finally {
    await f.drain();
  }
});

test('upstream certificate from another CA: 502, TLS verification stays on', async () => {
  const impostor = makeOrigin(strangerCerts);
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
  const port = (impostor.address() as AddressInfo).port;
  let reached = false;
  impostor.on('request', () => (reached = true));
  const f = makeFront(`https://127.0.0.1:${port}`, originCerts.caPath);
  const a = await f.listen();
  try {
    const res = await request(`https://localhost:${a.port}/`, { dispatcher: client });
    assert.equal(res.statusCode, 502);
    await res.body.text();
    assert.equal(reached, false, 'request reached a server with an unpinned certificate');
  } finally {
    await f.drain();
    impostor.close();
  }
});

test('a client that gives up mid-request leaves the wrapper healthy', async (t) => {
  t.after(releaseHeld);
  const gaveUp = new AbortController();
  const before = heldSoFar;
  const pending = request(`${frontUrl}/hold`, { dispatcher: client, signal: gaveUp.signal });
  await waitFor(() => heldSoFar > before, { what: 'the request to reach the origin' });
  assert.equal(front.inFlight, 1);
  gaveUp.abort();
  await assert.rejects(pending);
  await waitFor(() => front.inFlight === 0, { what: 'the front door to let go of the abandoned request' });
  assert.equal(releaseHeld(), 1); // the upstream answers to nobody
  assert.equal((await get('/')).status, 200);
  assert.equal(front.inFlight, 0);
});

test('a failing wrapper route gives a clean 500 without a stack', async () => {
  const r = await get('/boom');
  assert.equal(r.status, 500);
  assert.doesNotMatch(r.text, /bug in route|at \w+/);
});

test('WebSocket upgrades are proxied both ways', async (t) => {
  const a = new URL(frontUrl);
  const socket = await new Promise<import('node:net').Socket>((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      servername: 'localhost',
      port: Number(a.port),
      ca: fs.readFileSync(frontCerts.caPath),
      path: '/v1/ws',
      headers: { connection: 'Upgrade', upgrade: 'websocket' },
    });
    req.on('upgrade', (res, s) => (res.statusCode === 101 ? resolve(s) : reject(new Error(String(res.statusCode)))));
    req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
  t.after(() => socket.destroy());
  const echoed = await new Promise<string>((resolve) => {
    socket.once('data', (d) => resolve(String(d)));
    socket.write('ping');
  });
  assert.equal(echoed, 'ping');
});

test('/metrics exposes request counts by route and status', async () => {
  await get('/metrics-probe');
  const m = await get('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /kiwi_http_requests_total\{route="proxy",method="GET",status="200"\} \d+/);
  assert.match(m.text, /kiwi_http_request_duration_seconds_bucket/);
});

test('SIGHUP-style reload serves the new certificate to new connections', async () => {
  // Own copies of the listener's files, so overwriting them leaves the other tests alone.
  const dir = fs.mkdtempSync(path.join(root, 'reload-'));
  const tlsCert = path.join(dir, 'server.crt');
  const tlsKey = path.join(dir, 'server.key');
  fs.copyFileSync(frontCerts.certPath, tlsCert);
  fs.copyFileSync(frontCerts.keyPath, tlsKey);
  const f = makeFront(`https://127.0.0.1:${originPort}`, originCerts.caPath, { tlsCert, tlsKey });
  const a = await f.listen();
  const peerCert = (ca: string) =>
    new Promise<string>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: a.port, servername: 'localhost', ca: fs.readFileSync(ca), path: '/healthz', agent: false }, (res) => {
        resolve((res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256);
        res.resume();
      });
      req.on('error', reject);
      req.end();
    });
  try {
    const before = await peerCert(frontCerts.caPath);
    const renewed = certs('renewed');
    fs.copyFileSync(renewed.certPath, tlsCert);
    fs.copyFileSync(renewed.keyPath, tlsKey);
    assert.equal(f.reloadTls(), true);
    const after = await peerCert(renewed.caPath);
    assert.notEqual(after, before);
    // A broken file keeps the current certificate.
    fs.writeFileSync(tlsCert, 'not a certificate');
    assert.equal(f.reloadTls(), false);
    assert.equal(await peerCert(renewed.caPath), after);
  } finally {
    await f.drain();
  }
});

test('drain: in-flight requests finish, new connections are refused', async (t) => {
  const f = makeFront(`https://127.0.0.1:${originPort}`, originCerts.caPath);
  const a = await f.listen();
  const own = new Agent({ connect: { ca: fs.readFileSync(frontCerts.caPath) } });
  t.after(() => closeAll(releaseHeld, () => f.drain(), () => own.destroy()));
  const slow = request(`https://localhost:${a.port}/hold`, { dispatcher: own });
  // In flight end to end: the origin has it (and holds its answer).
  await waitFor(() => held.size === 1, { what: 'the request to reach the origin' });
  assert.equal(f.inFlight, 1);
  const drained = f.drain();
  assert.equal(releaseHeld(), 1);
  const res = await slow;
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers.connection, 'close');
  await res.body.text();
  assert.equal(await drained, 0, 'no request was cut');
  await assert.rejects(request(`https://localhost:${a.port}/`, { dispatcher: own }), /ECONNREFUSED|other side closed|SocketError/);
  await own.close();
});

test('request log has id, status and timing but no secrets', async () => {
  const secrets = ['Bearer-secret-token-value', 'sessioncookievalue123', 'authcode12345', 'pw-hunter2'];
  await get(`/oauth2/callback?code=${secrets[2]}&password=${secrets[3]}`, {
    headers: { authorization: `Bearer ${secrets[0]}`, cookie: `kanidm-session=${secrets[1]}` },
  });
  const all = logLines.join('');
  for (const s of secrets) assert.equal(all.includes(s), false, `log contains ${s}`);
  const line = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === 'request' && String(l.url).startsWith('/oauth2/callback'));
  assert.ok(line, 'request line logged');
  assert.equal(line.status, 200);
  assert.equal(typeof line.duration_ms, 'number');
  assert.match(line.req_id, /^[0-9a-f-]{36}$/);
});
