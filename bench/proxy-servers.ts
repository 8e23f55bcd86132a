// Child processes for bench/proxy.ts, so the load generator, the proxy and
// the origin do not share one event loop.
//   origin <certDir>               HTTPS origin answering GET /status with `true`
//   front  <certDir> <originPort>  the wrapper's front door proxying to it
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '../wrapper/src/telemetry/log.js';
import { FrontDoor } from '../wrapper/src/server/front-door.js';
import { createMetrics } from '../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../wrapper/src/server/proxy.js';
import { proxyAgent, upstreamTls } from '../wrapper/src/upstream/tls.js';

const [mode, certDir, originPort] = process.argv.slice(2);
process.on('SIGTERM', () => process.exit(0)); // clean exit (lets --cpu-prof write its profile)
const cert = (name: string) => fs.readFileSync(path.join(certDir!, name));
const ready = (port: number) => process.stdout.write(JSON.stringify({ port }) + '\n');

if (mode === 'origin') {
  const server = https.createServer({ cert: cert('origin.crt'), key: cert('origin.key'), keepAliveTimeout: 30_000 }, (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end('true');
  });
  server.listen(0, '127.0.0.1', () => ready((server.address() as AddressInfo).port));
} else if (mode === 'front') {
  // Request logging stays on (production behaviour) but goes nowhere.
  const log = createLogger({ level: 'info', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const target = `https://127.0.0.1:${originPort}`;
  const front = new FrontDoor({
    host: '127.0.0.1',
    port: 0,
    tlsCert: path.join(certDir!, 'front.crt'),
    tlsKey: path.join(certDir!, 'front.key'),
    maxHeaderSize: 16384,
    drainTimeoutMs: 1000,
    log,
    metrics: createMetrics(),
    proxy: new UpstreamProxy({
      target,
      agent: proxyAgent(upstreamTls(target, path.join(certDir!, 'origin-ca.crt'))),
      timeoutMs: 30_000,
      maxBodySize: 1 << 20,
      isHealthy: () => true,
      log,
    }),
    isReady: () => true,
  });
  const addr = await front.listen();
  ready(addr.port);
} else {
  throw new Error(`unknown mode ${mode}`);
}
