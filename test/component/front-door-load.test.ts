// The front door under load when the upstream process dies (kill -9) and when
// the wrapper itself is asked to stop (SIGTERM → drain). The upstream is a
// plain HTTPS server in its own process (fixtures/origin.mjs), so it can be
// killed for real; "healthy" follows the process exactly as the supervisor's
// state does (down on exit, up once it answers again).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Pool } from 'undici';
import { createLogger } from '../../wrapper/src/telemetry/log.js';
import { localCertificate } from './harness/certs.js';
import { proxyAgent, upstreamTls } from '../../wrapper/src/upstream/tls.js';
import { createMetrics } from '../../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../../wrapper/src/server/proxy.js';
import { FrontDoor } from '../../wrapper/src/server/front-door.js';
import { freePort } from '../e2e/net.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-load-'));
const tls = localCertificate(root, 'server');
const log = createLogger({ level: 'error', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
let originPort: number;
let origin: ChildProcess | null = null;
let healthy = false;

function startOrigin(): Promise<void> {
  const child = spawn(process.execPath, [path.resolve('test/component/fixtures/origin.mjs'), tls.certPath, tls.keyPath, String(originPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  origin = child;
  child.on('exit', () => (healthy = false)); // what the supervisor does on exit
  return new Promise((resolve) => child.stdout!.once('data', () => ((healthy = true), resolve())));
}

function front(drainTimeoutMs = 5_000) {
  const target = `https://127.0.0.1:${originPort}`;
  return new FrontDoor({
    host: '127.0.0.1',
    port: 0,
    tlsCert: tls.certPath,
    tlsKey: tls.keyPath,
    maxHeaderSize: 16384,
    drainTimeoutMs,
    log,
    metrics: createMetrics({ processMetrics: false }),
    proxy: new UpstreamProxy({ target, agent: proxyAgent(upstreamTls(target, tls.caPath)), timeoutMs: 5_000, maxBodySize: 1 << 20, isHealthy: () => healthy, log }),
    isReady: () => healthy,
  });
}

before(async () => {
  originPort = await freePort();
  await startOrigin();
});
after(() => {
  origin?.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

interface Outcome { start: number; end: number; status?: number; retryAfter?: string; error?: string }

test('kill -9 of the upstream under load: 503 with Retry-After within a second, never a reset or hang; recovers after restart', async () => {
  const f = front();
  const { port } = await f.listen();
  const pool = new Pool(`https://127.0.0.1:${port}`, { connections: 16, connect: { ca: fs.readFileSync(tls.caPath), servername: 'localhost' } });
  const outcomes: Outcome[] = [];
  const t0 = Date.now();
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const o: Outcome = { start: Date.now() - t0, end: 0 };
      try {
        const res = await pool.request({ path: '/work?ms=20', method: 'GET' });
        o.status = res.statusCode;
        o.retryAfter = res.headers['retry-after'] as string | undefined;
        await res.body.text();
      } catch (err) {
        o.error = (err as Error).message;
      }
      o.end = Date.now() - t0;
      outcomes.push(o);
    }
  };
  const workers = Array.from({ length: 16 }, worker);
  await new Promise((r) => setTimeout(r, 500));
  const killedAt = Date.now() - t0;
  origin!.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 700));
  await startOrigin();
  const restartedAt = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await Promise.all(workers);
  await pool.close();
  await f.drain();

  assert.deepEqual(outcomes.filter((o) => o.error), [], 'client-side errors (resets, hangs)');
  assert.deepEqual([...new Set(outcomes.map((o) => o.status))].sort(), [200, 503]);
  for (const o of outcomes.filter((x) => x.status === 503)) assert.equal(o.retryAfter, '2');
  const whileDown = outcomes.filter((o) => o.start > killedAt && o.end < restartedAt);
  assert.ok(whileDown.length > 0);
  assert.ok(whileDown.every((o) => o.status === 503), 'every request while down is a 503');
  assert.ok(Math.max(...whileDown.map((o) => o.end - o.start)) < 1000, 'answered within a second');
  const afterRestart = outcomes.filter((o) => o.start > restartedAt + 100);
  assert.ok(afterRestart.length > 0 && afterRestart.every((o) => o.status === 200), 'requests succeed again after the restart');
});

test('stop (drain) under load: every in-flight request completes', async () => {
  if (!healthy) await startOrigin();
  const f = front();
  const { port } = await f.listen();
  const pool = new Pool(`https://127.0.0.1:${port}`, { connections: 32, connect: { ca: fs.readFileSync(tls.caPath), servername: 'localhost' } });
  const inflight = Array.from({ length: 32 }, () =>
    pool.request({ path: '/work?ms=400', method: 'GET' }).then(async (r) => (await r.body.text(), r.statusCode)),
  );
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(f.inFlight, 32);
  const cut = await f.drain();
  const statuses = await Promise.all(inflight);
  assert.equal(cut, 0);
  assert.deepEqual([...new Set(statuses)], [200]);
  await pool.close();
});
