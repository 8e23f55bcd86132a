// Token endpoint throughput for the refresh grant: `chains` concurrent
// clients, each refreshing its own token family (every refresh rotates, so
// each request needs the previous answer), for `seconds`. Client auth is
// client_secret_basic, as KiwiStack services do it. Each response's new
// refresh token and signed id_token are produced for real.
//
// The issuer alone (in-process, no Kanidm): the cost of Kiwi ID's own token
// work. Kiwi ID's token endpoint next to Kanidm's own, on a real node, is
// bench/signin.ts.
//
//   node --import tsx bench/token.ts [seconds=5] [chains=16]
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import { cpuSeconds } from './proc.js';

const seconds = Number(process.argv[2] ?? 5);
const chains = Number(process.argv[3] ?? 16);
// KIWI_PROF=DIR: the server writes a --cpu-prof profile there (NODE_OPTIONS refuses --cpu-prof).
const prof = process.env.KIWI_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KIWI_PROF}`] : [];
const child = spawn(process.execPath, [...prof, '--import', 'tsx', path.join(import.meta.dirname, 'token-server.ts'), String(chains)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const info = await new Promise<{ port: number; ca: string; secret: string; tokens: string[] }>((resolve, reject) => {
  child.once('exit', (c) => reject(new Error(`token server exited ${c}`)));
  createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l)));
});
const pool = new Pool(`https://127.0.0.1:${info.port}`, { connections: chains, connect: { ca: info.ca, servername: 'localhost' } });
const auth = 'Basic ' + Buffer.from(`kiwi-mail:${info.secret}`).toString('base64');

async function refresh(rt: string): Promise<string> {
  const res = await pool.request({
    path: '/oauth2/token',
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString(),
  });
  const body = (await res.body.json()) as { refresh_token?: string; error?: string };
  if (res.statusCode !== 200 || !body.refresh_token) throw new Error(`refresh failed: ${res.statusCode} ${body.error}`);
  return body.refresh_token;
}

async function run(durationMs: number, latencies: number[] | null) {
  const end = Date.now() + durationMs;
  await Promise.all(
    info.tokens.map(async (_, i) => {
      while (Date.now() < end) {
        const t0 = process.hrtime.bigint();
        info.tokens[i] = await refresh(info.tokens[i]!);
        latencies?.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
}

try {
  await run(1000, null); // warm-up
  const lat: number[] = [];
  const start = Date.now();
  const cpu0 = cpuSeconds([child.pid!]);
  await run(seconds * 1000, lat);
  const cpu = cpuSeconds([child.pid!]) - cpu0;
  const elapsed = (Date.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!.toFixed(1);
  console.log(`refresh grant, ${chains} concurrent chains, ${seconds}s, ${os.cpus().length} cores`);
  console.log(`kiwi-id /oauth2/token   ${(lat.length / elapsed).toFixed(0).padStart(6)} req/s   p50 ${pct(50)} ms   p99 ${pct(99)} ms`);
  // Per core: requests per CPU-second of the issuer's process (client load excluded).
  console.log(`issuer CPU ${((cpu / lat.length) * 1e6).toFixed(0)} µs/request = ${(lat.length / cpu).toFixed(0)} requests/s per core (process at ${((100 * cpu) / elapsed).toFixed(0)} % of a core)`);
} finally {
  await pool.close();
  child.kill();
}
