// What the undici-based proxy must keep on the wire, against a plain HTTPS
// origin: repeated response headers, the request id both ways, chunked and
// 100-continue uploads, HEAD, and one pooled TLS connection per concurrent
// request whatever Host clients send (undici would otherwise drop a pooled
// connection each time the Host-derived TLS name changes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '../../wrapper/src/telemetry/log.js';
import { createMetrics } from '../../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../../wrapper/src/server/proxy.js';
import { FrontDoor } from '../../wrapper/src/server/front-door.js';
import { proxyAgent, upstreamTls } from '../../wrapper/src/upstream/tls.js';
import { localCertificate } from './harness/certs.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-wire-'));
const certs = localCertificate(root, 'server');
const ca = fs.readFileSync(certs.caPath);
const log = createLogger({ level: 'error', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
let originConnections = 0;
const origin = https.createServer({ cert: fs.readFileSync(certs.certPath), key: fs.readFileSync(certs.keyPath) }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: req.headers['x-request-id'], host: req.headers.host, body: Buffer.concat(chunks).toString() }));
  });
});
origin.on('secureConnection', () => originConnections++);
let front: FrontDoor;
let port = 0;

before(async () => {
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const target = `https://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  front = new FrontDoor({
    host: '127.0.0.1',
    port: 0,
    tlsCert: certs.certPath,
    tlsKey: certs.keyPath,
    maxHeaderSize: 16384,
    drainTimeoutMs: 2000,
    log,
    metrics: createMetrics({ processMetrics: false }),
    proxy: new UpstreamProxy({ target, agent: proxyAgent(upstreamTls(target, certs.caPath)), timeoutMs: 5000, maxBodySize: 1 << 20, isHealthy: () => true, log }),
    isReady: () => true,
  });
  port = (await front.listen()).port;
});
after(async () => {
  await front.drain();
  origin.closeAllConnections();
  origin.close();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: import('node:http').IncomingHttpHeaders;
  text: string;
}

/** node:https, so the test controls framing headers (chunked, Expect) and keeps a connection per agent. */
function send(o: { method?: string; host?: string; headers?: Record<string, string>; body?: string[]; agent?: https.Agent }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, servername: 'localhost', ca, method: o.method ?? 'GET', path: '/echo', agent: o.agent, headers: { host: o.host ?? `localhost:${port}`, ...o.headers } },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on('error', reject);
    const write = () => {
      for (const b of o.body ?? []) req.write(b);
      req.end();
    };
    if (o.headers?.expect) req.on('continue', write);
    else write();
  });
}

test('repeated Set-Cookie headers arrive as separate headers; the request id is the one Kanidm saw', async () => {
  const r = await send({});
  assert.equal(r.status, 200);
  assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
  assert.match(String(r.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(JSON.parse(r.text).id, r.headers['x-request-id']);
});

test('a chunked upload and an Expect: 100-continue upload reach the upstream whole; HEAD has no body', async () => {
  const chunked = await send({ method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: ['abc', 'def', 'ghi'] });
  assert.equal(JSON.parse(chunked.text).body, 'abcdefghi');
  const expect = await send({ method: 'POST', headers: { expect: '100-continue', 'content-length': '6' }, body: ['abcdef'] });
  assert.equal(expect.status, 200);
  assert.equal(JSON.parse(expect.text).body, 'abcdef');
  const head = await send({ method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
});

test('requests with ever different Host headers reuse the pooled upstream connection', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await send({ agent }); // the pool's connection exists
    const before = originConnections;
    for (let i = 0; i < 20; i++) {
      const r = await send({ agent, host: `client-${i}.example:${port}` });
      assert.equal(JSON.parse(r.text).host, `client-${i}.example:${port}`, 'the public Host reaches the upstream');
    }
    assert.equal(originConnections - before, 0, 'no new upstream TLS connection for a new Host');
  } finally {
    agent.destroy();
  }
});
