// The front door against the real thing: one real Kanidm 1.11.1 (started by
// `kiwi-id init` + `kiwi-id run`, test/integration/harness), measured in the
// same run, side by side, round after round:
//   direct   wrk → Kanidm's own TLS listener
//   nginx    wrk → Debian's nginx as a TLS reverse proxy (upstream keep-alive
//            pool, upstream certificate verified) → the same Kanidm
//   node-floor  wrk → the thinnest Node proxy built of the front door's parts
//            (node:https + the same undici pool; bench/proxy-floor.ts): what
//            any Node front costs here, so kiwi-id minus it is the wrapper's own
//   kiwi-id  wrk → the wrapper's public listener → the same Kanidm
// for `/status`, `/ui/login` and `/pkg/style.css` (a file Kanidm writes in
// two pieces, headers then body; see the quickack phases below). wrk
// (Debian) is the load generator of every row. Besides throughput and
// latency it prints the CPU time each front spends per request (from
// /proc), Kanidm's, the wrapper's RSS idle and at its peak under load, and
// how many connections the wrapper opened to Kanidm (the keep-alive pool at
// work). Every row also prints what the wrapper's process spent meanwhile:
// in the other fronts' rows that is its relay of Kanidm's log output
// (Kanidm logs a few lines per /ui/login request, none for /status), which
// the kiwi-id row's front CPU includes.
//
// Throughput is measured with wrk at full speed, so latency there is mostly
// queueing (32 connections waiting on a saturated front). A second, paced
// pass has each connection pause connections/rate between requests (`rate`,
// default 1,000 req/s: the rate when answers are fast; wrk's delay() hook)
// and reports the latency each front adds when it is not the bottleneck.
// Figures are printed, never asserted; the run fails only if a request
// failed (non-2xx/3xx or a socket error).
//
// The whole comparison runs once per phase, a phase being the wrapper's
// config keys `workers` and, after a slash, `heap_growing_percent` (default
// phases: 1 and 2 workers, then 1 worker with V8's own heap growth, `1/0`,
// to show what the default 30 % trades). The wrapper is restarted between
// phases; direct and nginx are measured again in each, so every phase is side by side.
// After the keys, `+quickack` (e.g. `1+quickack`) runs the phase with quick
// ACKs on this machine's loopback routes, as the appliance sets them at boot
// (lxc/rootfs/usr/lib/kiwi-id/loopback-quickack, run as is): it needs root,
// and the routes are put back as they were after the phase (and on Ctrl-C);
// `+NAME=VALUE` adds to the wrapper's environment (e.g.
// `1+quickack+NODE_OPTIONS=--max-semi-space-size=2`), and `+node:--FLAG` a flag
// of Node's own to the wrapper's command line (for those NODE_OPTIONS refuses,
// e.g. `1+quickack+node:--single-threaded-gc`). Each phase's medians are
// printed as soon as it ends, and all phases' again at the end of the run.
//
//   npm run bench:proxy -- [seconds=5] [connections=32] [rounds=3] [phases=1,2,1/0] [rate=1000]
//   KIWI_PROF=DIR adds a --cpu-prof of the wrapper (its primary with workers > 1) and of node-floor.
// Needs: wrk and nginx (apt-get install wrk nginx-light), the pinned Kanidm
// (scripts/install-upstream --prefix .kiwi-dev/upstream), a built wrapper
// (npm run build; the npm script does it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KiwiNode, REPO } from '../test/integration/harness/kiwi-node.js';
import { freePort } from '../test/e2e/net.js';
import { addEnvSetting, addNodeFlag, closeAgents, get, initKiwi, need, needNodeParts, profFlags, runKiwi, until, wrk, type Load, type Phase } from './kiwi-front.js';
import { childrenOf, commOf, cpuSeconds, rssMiB, rssSplitMiB, settledRssMiB, tree } from './proc.js';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 32);
const rounds = Number(process.argv[4] ?? 3);
/** A phase of this bench: the wrapper's keys and environment, and whether the loopback routes get quick ACKs. */
type BenchPhase = Phase & { quickack: boolean; env: Record<string, string>; nodeFlags: string[] };
const phases: BenchPhase[] = (process.argv[5] ?? '1,2,1/0').split(',').map((spec) => {
  const [keys, ...extras] = spec.split('+');
  const [w, h] = keys!.split('/');
  const ph: BenchPhase = { workers: Number(w), heap: h === undefined ? undefined : Number(h), quickack: false, env: {}, nodeFlags: [] };
  for (const extra of extras) {
    if (extra === 'quickack') ph.quickack = true;
    else if (!addEnvSetting(extra, ph.env) && !addNodeFlag(extra, ph.nodeFlags)) throw new Error(`phase ${spec}: "+${extra}" is neither quickack, NAME=VALUE nor node:--FLAG`);
  }
  return ph;
});
const rate = Number(process.argv[6] ?? 1000);
const PATHS = ['/status', '/ui/login', '/pkg/style.css'];
const ROWS = ['direct', 'nginx', 'node-floor', 'kiwi-id'] as const;
type Row = (typeof ROWS)[number];
/** One wrk run and the CPU time per request of the front, of Kanidm and of the wrapper's process (µs). */
type Measured = Load & { frontCpu: number; kanidmCpu: number; wrapperCpu: number };
/** Per path, per row, one entry per round. */
type Results = Record<string, Record<Row, Measured[]>>;

// ---------------------------------------------------------------------------
// The three fronts

/** Debian's nginx as a TLS reverse proxy in front of Kanidm, run by us on a free port. */
async function startNginx(dir: string, node: KiwiNode): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `worker_processes auto;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream kanidm { server 127.0.0.1:${node.upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${node.root}/tls/wrapper.crt;
    ssl_certificate_key ${node.root}/private/wrapper.key;
    location / {
      proxy_pass https://kanidm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${node.upstreamCaPath};
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }
  }
}
`,
  );
  const child = spawn('nginx', ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  try {
    await until(`nginx on ${port}`, () => get(port, '/status', node.caPath).then((s) => s === 200), () => (child.exitCode !== null ? `nginx exited: ${err}` : ''), 30_000);
  } catch (e) {
    child.kill('SIGQUIT'); // not returned to the caller, so not stopped by its cleanup
    throw e;
  }
  return { port, child };
}

/** bench/proxy-floor.ts on a free port, with the wrapper's certificate, in front of the same Kanidm. */
async function startFloor(node: KiwiNode): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [...profFlags(), '--import', 'tsx', path.join(import.meta.dirname, 'proxy-floor.ts'), `${node.root}/tls/wrapper.crt`, `${node.root}/private/wrapper.key`, node.upstreamUrl, node.upstreamCaPath],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`proxy-floor exited ${c}`)));
    child.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
  }).catch((e) => {
    child.kill();
    throw e;
  });
  return { port, child };
}

async function upstreamConnections(node: KiwiNode): Promise<number> {
  return (await node.metric('kiwi_upstream_connections_total')) ?? NaN;
}

/** The wrapper's runtime libraries (package.json `dependencies`), for the "Node with the wrapper's libraries" reference. */
const WRAPPER_LIBRARIES = Object.keys((JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);

/**
 * RSS of two idle reference processes, measured like the wrapper (once
 * settled): Node alone, and Node with the wrapper's libraries
 * imported — the memory floor under any wrapper built on them.
 */
async function referenceRss(): Promise<{ bare: number; libraries: number }> {
  const idleRss = async (script: string) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `${script}; console.log('ready'); setInterval(() => {}, 1 << 30);`], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (c) => reject(new Error(`reference process exited ${c}`)));
        child.stdout!.once('data', () => resolve());
      });
      return await settledRssMiB(() => [child.pid!]);
    } finally {
      child.kill();
    }
  };
  return {
    bare: await idleRss(''),
    libraries: await idleRss(`for (const m of ${JSON.stringify(WRAPPER_LIBRARIES)}) await import(m)`),
  };
}

// ---------------------------------------------------------------------------

/** This machine's local routes on lo, as `ip` prints them (with quickack if set). */
function loopbackRoutes(): string[] {
  const r = spawnSync('ip', ['-4', 'route', 'show', 'table', 'local', 'type', 'local', 'dev', 'lo'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip route show: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

/** Quick ACKs on the loopback routes: the appliance's own script; needs root. */
function setQuickack(): void {
  const r = spawnSync('sh', [path.join(REPO, 'lxc/rootfs/usr/lib/kiwi-id/loopback-quickack')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loopback-quickack (a +quickack phase needs root): ${r.stderr}`);
}

/** The loopback routes back as they were before the run. */
function restoreRoutes(routes: string[]): void {
  for (const route of routes) {
    const r = spawnSync('ip', ['route', 'change', 'table', 'local', ...route.trim().split(/\s+/), 'dev', 'lo'], { encoding: 'utf8' });
    if (r.status !== 0) console.error(`could not restore the loopback route "${route}": ${r.stderr}`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f0 = (x: number) => Math.round(x).toLocaleString('en-US');
const f2 = (x: number) => x.toFixed(2);

need('wrk', 'apt-get install wrk');
need('nginx', 'apt-get install nginx-light');
needNodeParts();

const node = new KiwiNode({ name: 'bench' });
const nginxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-bench-nginx-'));
let nginx: { port: number; child: ChildProcess } | null = null;
let floor: { port: number; child: ChildProcess } | null = null;
let failures = 0;
const summary: string[] = [];
let cleaned: Promise<void> | null = null;
/** The loopback routes as found, when a phase is to change them (only then is `ip` needed). */
const routesAtStart = phases.some((ph) => ph.quickack) ? loopbackRoutes() : [];
let routesChanged = false;
/** Stops what the run started (nginx, kiwi-id and its Kanidm) and removes their files; also on Ctrl-C. */
const cleanup = () =>
  (cleaned ??= (async () => {
    if (routesChanged) restoreRoutes(routesAtStart);
    nginx?.child.kill('SIGQUIT');
    if (nginx && nginx.child.exitCode === null) await new Promise((r) => nginx!.child.once('exit', r));
    floor?.child.kill('SIGTERM');
    if (floor && floor.child.exitCode === null) await new Promise((r) => floor!.child.once('exit', r));
    fs.rmSync(nginxDir, { recursive: true, force: true });
    await node.close();
    await closeAgents();
  })());
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void cleanup().finally(() => process.exit(130)));
try {
  await initKiwi(node);
  for (const ph of phases) {
    if (ph.quickack) {
      routesChanged = true;
      setQuickack();
    }
    const kiwi = await runKiwi(node, ph);
    nginx ??= await startNginx(nginxDir, node);
    floor ??= await startFloor(node);
    await phase(kiwi, nginx, floor, ph);
    await node.stop('SIGTERM');
    if (ph.quickack) {
      restoreRoutes(routesAtStart);
      routesChanged = false;
    }
  }
  if (phases.length > 1) console.log(`\nAll phases:${summary.join('\n')}`);
  if (failures > 0) {
    console.error(`\n${failures} requests failed during the run`);
    process.exitCode = 1;
  }
} finally {
  await cleanup();
}

async function phase(kiwi: ChildProcess, ngx: { port: number; child: ChildProcess }, flr: { port: number; child: ChildProcess }, ph: BenchPhase): Promise<void> {
  const kanidmPid = childrenOf(kiwi.pid!).find((p) => commOf(p) === 'kanidmd');
  if (!kanidmPid) throw new Error('kanidmd not found under kiwi-id run');
  const fronts: Record<Row, { port: number; pids: () => number[] }> = {
    direct: { port: node.upstreamPort, pids: () => [] },
    nginx: { port: ngx.port, pids: () => tree(ngx.child.pid!) },
    'node-floor': { port: flr.port, pids: () => [flr.child.pid!] },
    'kiwi-id': { port: node.listenPort, pids: () => tree(kiwi.pid!, 'kanidmd') },
  };
  for (const p of PATHS) {
    for (const row of ROWS) {
      const status = await get(fronts[row].port, p, row === 'direct' ? node.upstreamCaPath : node.caPath);
      if (status !== 200) throw new Error(`${row} ${p} answered ${status}, not 200`);
    }
  }
  // The wrapper's RSS, right after start, idle once settled, and at its peak under load (sampled
  // during its rows). (node-floor runs under tsx's loader, so its memory says nothing about a
  // Node proxy's; referenceRss does.) Settling also lets Kanidm's start-up work finish.
  const rssStart = rssMiB(fronts['kiwi-id'].pids());
  const rssIdle = await settledRssMiB(fronts['kiwi-id'].pids);
  const kiwiSplit = rssSplitMiB(kiwi.pid!);
  let rssPeak = rssIdle;
  const sampleRss = () => (rssPeak = Math.max(rssPeak, rssMiB(fronts['kiwi-id'].pids())));
  const connsBefore = await upstreamConnections(node);

  const title = `kiwi-id with workers = ${ph.workers}${ph.heap === undefined ? '' : `, heap_growing_percent = ${ph.heap}`}${ph.quickack ? ', quick ACKs on the loopback routes' : ''}${Object.entries(ph.env).map(([k, v]) => `, ${k}=${v}`).join('')}${ph.nodeFlags.map((f) => `, node ${f}`).join('')}: reverse proxy in front of Kanidm 1.11.1, wrk -t1 -c${connections}, ${seconds}s per row, ${rounds} rounds, ${os.cpus().length} cores`;
  console.log(title);
  const wrapperPids = fronts['kiwi-id'].pids;
  /** One row: wrk against the front, and the CPU the front, Kanidm and the wrapper spent per request meanwhile. */
  const measure = async (row: Row, p: string, opts: { rate?: number; onTick?: () => void }): Promise<Measured> => {
    const pids = fronts[row].pids();
    const [c0, k0, w0] = [cpuSeconds(pids), cpuSeconds([kanidmPid]), cpuSeconds(wrapperPids())];
    const load = await wrk(fronts[row].port, p, seconds, connections, opts);
    const perRequest = (s0: number, s1: number) => ((s1 - s0) / load.requests) * 1e6;
    failures += load.failures;
    return { ...load, frontCpu: perRequest(c0, cpuSeconds(pids)), kanidmCpu: perRequest(k0, cpuSeconds([kanidmPid])), wrapperCpu: perRequest(w0, cpuSeconds(wrapperPids())) };
  };
  const line = (p: string, label: string, row: Row, m: Measured) =>
    console.log(
      `  ${p.padEnd(10)} ${label}  ${row.padEnd(10)} ${f0(m.rps).padStart(7)} req/s   p50 ${f2(m.p50).padStart(6)} ms   p99 ${f2(m.p99).padStart(7)} ms` +
        `   front CPU ${row === 'direct' ? '     –' : f0(m.frontCpu).padStart(6)} µs/req   Kanidm CPU ${f0(m.kanidmCpu).padStart(4)} µs/req` +
        (row === 'kiwi-id' ? '' : `   wrapper meanwhile ${f0(m.wrapperCpu).padStart(3)} µs/req`) +
        (m.failures ? `   FAILED REQUESTS ${m.failures}` : ''),
    );
  const full: Results = {};
  const paced: Results = {};
  for (const p of PATHS) {
    full[p] = { direct: [], nginx: [], 'node-floor': [], 'kiwi-id': [] };
    paced[p] = { direct: [], nginx: [], 'node-floor': [], 'kiwi-id': [] };
    for (const row of ROWS) await wrk(fronts[row].port, p, 2, connections); // warm-up: JIT, pools, caches
    for (let r = 0; r < rounds; r++) {
      for (const row of ROWS) {
        const m = await measure(row, p, { onTick: row === 'kiwi-id' ? sampleRss : undefined });
        full[p]![row].push(m);
        line(p, `round ${r + 1}`, row, m);
      }
    }
    for (let r = 0; r < rounds; r++) {
      for (const row of ROWS) {
        const m = await measure(row, p, { rate });
        paced[p]![row].push(m);
        line(p, `paced ${r + 1}`, row, m);
      }
    }
  }
  const connsAfter = await upstreamConnections(node);

  const phaseStart = summary.length;
  summary.push(`\n${title}; medians over ${rounds} rounds`);
  summary.push('| path | row | req/s | p50 ms | p99 ms | front CPU µs/req | Kanidm CPU µs/req | wrapper meanwhile µs/req | ratio to direct | ratio to nginx |');
  summary.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const p of PATHS) {
    const m = (row: Row, k: keyof Measured) => median(full[p]![row].map((x) => x[k]));
    for (const row of ROWS) {
      summary.push(
        `| \`${p}\` | ${row} | ${f0(m(row, 'rps'))} | ${f2(m(row, 'p50'))} | ${f2(m(row, 'p99'))} | ${row === 'direct' ? '–' : f0(m(row, 'frontCpu'))} | ${f0(m(row, 'kanidmCpu'))} | ${row === 'kiwi-id' ? '(front)' : f0(m(row, 'wrapperCpu'))} | ${f2(m(row, 'rps') / m('direct', 'rps'))} | ${row === 'direct' ? '–' : f2(m(row, 'rps') / m('nginx', 'rps'))} |`,
      );
    }
    summary.push(`| \`${p}\` | added latency, kiwi-id − direct | | ${f2(m('kiwi-id', 'p50') - m('direct', 'p50'))} | ${f2(m('kiwi-id', 'p99') - m('direct', 'p99'))} | | | | | |`);
  }
  summary.push(`\nPaced: wrk -c${connections}, each connection pausing ${f0((connections / rate) * 1000)} ms between requests (${f0(rate)} req/s if answers were instant); medians over ${rounds} rounds`);
  summary.push('| path | row | req/s | p50 ms | p99 ms | front CPU µs/req | added p50 ms | added p99 ms |');
  summary.push('|---|---|---|---|---|---|---|---|');
  for (const p of PATHS) {
    const m = (row: Row, k: keyof Measured) => median(paced[p]![row].map((x) => x[k]));
    for (const row of ROWS) {
      const added = (k: 'p50' | 'p99') => (row === 'direct' ? '–' : f2(m(row, k) - m('direct', k)));
      summary.push(`| \`${p}\` | ${row} | ${f0(m(row, 'rps'))} | ${f2(m(row, 'p50'))} | ${f2(m(row, 'p99'))} | ${row === 'direct' ? '–' : f0(m(row, 'frontCpu'))} | ${added('p50')} | ${added('p99')} |`);
    }
  }
  summary.push(
    `kiwi-id RSS (all wrapper processes, Kanidm excluded): right after start ${rssStart.toFixed(0)} MiB, idle ${rssIdle.toFixed(0)} MiB once settled (main process: ${kiwiSplit.anon.toFixed(0)} anonymous, ${kiwiSplit.file.toFixed(0)} file-backed), peak under load ${rssPeak.toFixed(0)} MiB`,
  );
  const floors = await referenceRss();
  summary.push(`Node's own floor, idle: node alone ${floors.bare.toFixed(0)} MiB, node with the wrapper's libraries imported (nothing started) ${floors.libraries.toFixed(0)} MiB`);
  summary.push(`kiwi-id connections opened to Kanidm during the measured rounds: ${connsAfter - connsBefore} (keep-alive pool; ${connections} client connections)`);
  // Now, so a later phase that fails does not take this one's figures with it.
  console.log(summary.slice(phaseStart).join('\n'));
}
