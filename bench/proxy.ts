// Reverse-proxy overhead: the same HTTPS origin measured directly and through
// the wrapper's front door (TLS termination, request id, log line, metrics,
// forwarded headers, pinned-CA keep-alive pool), one after the other in this
// run, with autocannon (keep-alive, 32 connections).
//
// The origin is a minimal Node HTTPS server answering `true`, not Kanidm
// (the pinned Kanidm cannot be built here, see upstream-pins/BLOCKED.md), so
// the ratio isolates what the wrapper adds per request.
//
//   node --import tsx bench/proxy.ts [seconds=5] [connections=32]
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { generateDevCertificate } from '../wrapper/src/crypto/tls-certs.js';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 32);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-bench-'));
const certs = (name: string, ca: string) =>
  generateDevCertificate({
    certPath: path.join(dir, `${name}.crt`),
    keyPath: path.join(dir, `${name}.key`),
    caPath: path.join(dir, ca),
    hostnames: ['localhost'],
    ips: ['127.0.0.1'],
    days: 1,
  });
certs('origin', 'origin-ca.crt');
certs('front', 'front-ca.crt');

const children: ChildProcess[] = [];
function start(...args: string[]): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'proxy-servers.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}`)));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l).port));
  });
}

async function load(port: number, duration: number) {
  const r = await autocannon({ url: `https://127.0.0.1:${port}/status`, connections, duration, pipelining: 1 });
  if (r.non2xx || r.errors) throw new Error(`bench run had ${r.non2xx} non-2xx and ${r.errors} errors`);
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 };
}

try {
  const originPort = await start('origin', dir);
  const frontPort = await start('front', dir, String(originPort));
  await load(originPort, 1); // warm-up: JIT and keep-alive pools
  await load(frontPort, 1);
  const direct = await load(originPort, seconds);
  const proxied = await load(frontPort, seconds);
  const row = (name: string, m: typeof direct) =>
    `${name.padEnd(16)} ${m.rps.toFixed(0).padStart(8)} req/s   p50 ${String(m.p50).padStart(3)} ms   p99 ${String(m.p99).padStart(3)} ms`;
  console.log(`proxy overhead, ${connections} connections, ${seconds}s each, ${os.cpus().length} cores`);
  console.log(row('direct origin', direct));
  console.log(row('through wrapper', proxied));
  console.log(`ratio (through / direct) throughput: ${(proxied.rps / direct.rps).toFixed(2)}`);
} finally {
  for (const c of children) c.kill();
  fs.rmSync(dir, { recursive: true, force: true });
}
