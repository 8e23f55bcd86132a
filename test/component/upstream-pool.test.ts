// The connection pool toward Kanidm (upstream/tls.ts), against a plain HTTPS
// origin: new connections reuse the pool's one TLS context, and a connection
// left idle between two requests stays open past undici's and our former
// keep-alive time. What a new connection costs, and why it matters for the
// proxy's latency, is in bench/RESULTS.md ("Reconnections").
import { test, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { proxyAgent, undiciAgent, upstreamTls, UPSTREAM_IDLE_MS } from '../../wrapper/src/upstream/tls.js';
import { localCertificate } from './harness/certs.js';
import { closeAll } from './harness/cleanup.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-pool-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const certs = localCertificate(root, 'origin');
const localhostOnly = localCertificate(root, 'localhost-only', []); // names localhost, not 127.0.0.1

/**
 * An origin that sends no Keep-Alive hint and never closes an idle
 * connection itself (as Kanidm, within its 60 s), counts its TLS connections
 * and, when asked, holds replies until `waitFor` requests are in.
 */
async function origin(waitFor = 1, c: { certPath: string; keyPath: string } = certs) {
  const server = https.createServer({ cert: fs.readFileSync(c.certPath), key: fs.readFileSync(c.keyPath) });
  server.keepAliveTimeout = 0;
  let connections = 0;
  server.on('secureConnection', () => connections++);
  const waiting: Array<() => void> = [];
  server.on('request', (_req, res) => {
    waiting.push(() => res.end('ok'));
    if (waiting.length >= waitFor) for (const reply of waiting.splice(0)) reply();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, url, connections: () => connections };
}

for (const [name, makeAgent] of [['proxy pool', proxyAgent], ['API agent', undiciAgent]] as const) {
  test(`${name}: new upstream connections share the pool's TLS context`, async (t) => {
    const concurrent = 4;
    const o = await origin(concurrent);
    const agent = makeAgent(upstreamTls(o.url, certs.caPath));
    // Counts contexts tls.connect builds itself (it does unless given one).
    const built = mock.method(tls, 'createSecureContext');
    t.after(() => closeAll(() => built.mock.restore(), () => agent.destroy(), () => o.server.closeAllConnections(), () => o.server.close()));
    // All requests are held until the last arrives, so each needs its own connection.
    const answers = await Promise.all(
      Array.from({ length: concurrent }, async () => {
        const res = await request(`${o.url}/`, { dispatcher: agent });
        return `${res.statusCode} ${await res.body.text()}`;
      }),
    );
    assert.deepEqual(answers, Array(concurrent).fill('200 ok'));
    assert.equal(o.connections(), concurrent);
    assert.equal(built.mock.callCount(), 0, 'a TLS context was built for a connection');
  });

  test(`${name}: a certificate of the pinned CA that names another host is refused`, async (t) => {
    const o = await origin(1, localhostOnly);
    let reached = false;
    o.server.on('request', () => (reached = true));
    // Configured as 127.0.0.1, which the certificate does not name (the shared context checks the CA only).
    const agent = makeAgent(upstreamTls(o.url, localhostOnly.caPath));
    t.after(() => closeAll(() => agent.destroy(), () => o.server.closeAllConnections(), () => o.server.close()));
    await assert.rejects(request(`${o.url}/`, { dispatcher: agent }), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    assert.equal(reached, false);
  });
}

test('an idle pooled connection is kept between requests that are seconds apart', async (t) => {
  // 10 s was the pool's keep-alive before, undici's default is 4 s; the pool keeps 50 s.
  const pause = 12_500;
  assert.ok(UPSTREAM_IDLE_MS > pause);
  const o = await origin();
  const agent = proxyAgent(upstreamTls(o.url, certs.caPath));
  t.after(() => closeAll(() => agent.destroy(), () => o.server.closeAllConnections(), () => o.server.close()));
  const get = async () => (await request(`${o.url}/`, { dispatcher: agent })).body.text();
  assert.equal(await get(), 'ok');
  // The pause is what is under test (time idle), not a wait for something to happen.
  await delay(pause);
  assert.equal(await get(), 'ok');
  assert.equal(o.connections(), 1, 'the pool reconnected after an idle pause');
});
