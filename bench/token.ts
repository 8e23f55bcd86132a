// Token endpoint throughput for the refresh grant: `chains` concurrent
// clients, each refreshing its own token family (every refresh rotates, so
// each request needs the previous answer), for `seconds` per round. Client
// auth is client_secret_basic, as KiwiStack services do it. Each response's
// new refresh token and signed id_token are produced for real.
//
// The issuer alone (in-process, no Kanidm): the cost of Kiwi ID's own token
// work. Three issuers are measured in alternating rounds of the same run:
// Kiwi ID as configured by default (SQLite state store); the same with the
// state in a Map (no durability: the ceiling of any store, showing what
// oidc-provider, HTTP and signing cost alone); and Kiwi ID with V8's own
// heap growth (`heap_growing_percent = 0`), to show what the default trades.
// Each issuer's peak RSS during its rounds is printed too. Kiwi ID's token
// endpoint next to Kanidm's own, on a real node, is bench/signin.ts.
//
//   node --import tsx bench/token.ts [seconds=5] [chains=16] [rounds=3]
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import { cpuSeconds, rssMiB } from './proc.js';

const seconds = Number(process.argv[2] ?? 5);
const chains = Number(process.argv[3] ?? 16);
const rounds = Number(process.argv[4] ?? 3);
/** The issuers compared: their state store and heap_growing_percent (undefined: Kiwi ID's default). */
const VARIANTS = {
  sqlite: { store: 'sqlite', heap: undefined, label: 'kiwi-id (SQLite state store)' },
  memory: { store: 'memory', heap: undefined, label: 'ceiling (state in a Map, no durability)' },
  'v8-heap': { store: 'sqlite', heap: 0, label: 'kiwi-id, heap_growing_percent = 0' },
} as const;
type Store = keyof typeof VARIANTS;
const STORES = Object.keys(VARIANTS) as Store[];
// KIWI_PROF=DIR: the servers write a --cpu-prof profile there (NODE_OPTIONS refuses --cpu-prof).
const prof = process.env.KIWI_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KIWI_PROF}`] : [];

interface Issuer {
  child: ChildProcess;
  pool: Pool;
  auth: string;
  tokens: string[];
}

async function start(store: Store): Promise<Issuer> {
  const v = VARIANTS[store];
  const args = [path.join(import.meta.dirname, 'token-server.ts'), String(chains), v.store, ...(v.heap === undefined ? [] : [String(v.heap)])];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const info = await new Promise<{ port: number; ca: string; secret: string; tokens: string[] }>((resolve, reject) => {
      child.once('exit', (c) => reject(new Error(`token server (${store}) exited ${c}`)));
      createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l)));
    });
    const pool = new Pool(`https://127.0.0.1:${info.port}`, { connections: chains, connect: { ca: info.ca, servername: 'localhost' } });
    return { child, pool, auth: 'Basic ' + Buffer.from(`kiwi-mail:${info.secret}`).toString('base64'), tokens: info.tokens };
  } catch (err) {
    child.kill();
    throw err;
  }
}

async function refresh(issuer: Issuer, rt: string): Promise<string> {
  const res = await issuer.pool.request({
    path: '/oauth2/token',
    method: 'POST',
    headers: { authorization: issuer.auth, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString(),
  });
  const body = (await res.body.json()) as { refresh_token?: string; error?: string };
  if (res.statusCode !== 200 || !body.refresh_token) throw new Error(`refresh failed: ${res.statusCode} ${body.error}`);
  return body.refresh_token;
}

/** Every chain refreshes in a loop for `durationMs`; latencies in ms. */
async function run(issuer: Issuer, durationMs: number): Promise<number[]> {
  const latencies: number[] = [];
  const end = Date.now() + durationMs;
  await Promise.all(
    issuer.tokens.map(async (_, i) => {
      while (Date.now() < end) {
        const t0 = process.hrtime.bigint();
        issuer.tokens[i] = await refresh(issuer, issuer.tokens[i]!);
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  return latencies;
}

interface Round {
  rps: number;
  p50: number;
  p99: number;
  cpuPerRequest: number; // µs of the issuer process
  peakRss: number; // MiB
}

async function round(issuer: Issuer): Promise<Round> {
  const start = Date.now();
  const cpu0 = cpuSeconds([issuer.child.pid!]);
  let peakRss = rssMiB([issuer.child.pid!]);
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB([issuer.child.pid!]))), 200);
  const lat = await run(issuer, seconds * 1000).finally(() => clearInterval(sampler));
  const cpu = cpuSeconds([issuer.child.pid!]) - cpu0;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!;
  return { rps: lat.length / ((Date.now() - start) / 1000), p50: pct(50), p99: pct(99), cpuPerRequest: (cpu / lat.length) * 1e6, peakRss };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const issuers = new Map<Store, Issuer>();
try {
  for (const s of STORES) issuers.set(s, await start(s));
  for (const s of STORES) await run(issuers.get(s)!, 1000); // warm-up: JIT, pools
  console.log(`refresh grant, ${chains} concurrent chains, ${seconds}s per round, ${rounds} rounds alternating, ${os.cpus().length} cores`);
  const results = new Map<Store, Round[]>(STORES.map((s) => [s, []]));
  for (let r = 0; r < rounds; r++) {
    for (const s of STORES) {
      const x = await round(issuers.get(s)!);
      results.get(s)!.push(x);
      console.log(`  round ${r + 1}  ${s.padEnd(7)} ${x.rps.toFixed(0).padStart(6)} req/s   p50 ${x.p50.toFixed(1)} ms   p99 ${x.p99.toFixed(1)} ms   issuer CPU ${x.cpuPerRequest.toFixed(0)} µs/request   peak RSS ${x.peakRss.toFixed(0)} MiB`);
    }
  }
  const m = (s: Store, k: keyof Round) => median(results.get(s)!.map((x) => x[k]));
  console.log(`medians over ${rounds} rounds (per core = requests per CPU-second of the issuer's process, client load excluded):`);
  for (const s of STORES) {
    const label = VARIANTS[s].label;
    console.log(
      `  ${label.padEnd(40)} ${m(s, 'rps').toFixed(0).padStart(6)} req/s   p50 ${m(s, 'p50').toFixed(1)} ms   p99 ${m(s, 'p99').toFixed(1)} ms   ` +
        `${m(s, 'cpuPerRequest').toFixed(0)} µs/request = ${(1e6 / m(s, 'cpuPerRequest')).toFixed(0)} requests/s per core   peak RSS ${Math.max(...results.get(s)!.map((x) => x.peakRss)).toFixed(0)} MiB`,
    );
  }
  console.log(`  the SQLite store's share of a grant's CPU: ${(100 * (1 - m('memory', 'cpuPerRequest') / m('sqlite', 'cpuPerRequest'))).toFixed(0)} %`);
  console.log(`  CPU per grant, default heap growth vs V8's own: ${(m('sqlite', 'cpuPerRequest') / m('v8-heap', 'cpuPerRequest')).toFixed(2)}×`);
} finally {
  for (const i of issuers.values()) {
    await i.pool.close();
    i.child.kill();
  }
}
