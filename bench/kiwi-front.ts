// What the benchmarks that run a whole Kiwi ID node share: first boot and
// `kiwi-id run` of a node with the integration harness (Kanidm 1.11.1
// included), simple requests, waiting on a condition, and wrk as the load
// generator. Used by bench/proxy.ts and bench/memory.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { REPO, UPSTREAM_PREFIX, type KiwiNode } from '../test/integration/harness/kiwi-node.js';

/** A phase: `workers`, optionally `/heap_growing_percent`. */
export interface Phase {
  workers: number;
  heap?: number;
  /** Run this launcher (the appliance's `bin/kiwi-id`, see buildAppliance) instead of wrapper/bin/kiwi-id.js. */
  launcher?: string;
  /** Environment added to the wrapper's (e.g. glibc's MALLOC_ARENA_MAX). */
  env?: Record<string, string>;
  /** Node's own flags for the wrapper's process, for those NODE_OPTIONS refuses (e.g. --single-threaded-gc). */
  nodeFlags?: string[];
}

/** A `node:--FLAG` part of a bench's variant or phase spec, added to `flags`; false if the part is not one. */
export function addNodeFlag(part: string, flags: string[]): boolean {
  if (!part.startsWith('node:--')) return false;
  flags.push(part.slice('node:'.length));
  return true;
}

/** A `NAME=VALUE` part of a bench's variant or phase spec, added to `env`; false if the part is not one. */
export function addEnvSetting(part: string, env: Record<string, string>): boolean {
  const eq = part.indexOf('=');
  if (eq <= 0) return false;
  env[part.slice(0, eq)] = part.slice(eq + 1);
  return true;
}

export function need(bin: string, hint: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).stdout.trim();
  if (!found) throw new Error(`${bin} not found: ${hint}`);
  return found;
}

/** What a node needs before `initKiwi`: the pinned Kanidm and a built wrapper. */
export function needNodeParts(): void {
  if (!fs.existsSync(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'))) throw new Error(`no Kanidm at ${UPSTREAM_PREFIX}: run scripts/install-upstream --prefix .kiwi-dev/upstream`);
  if (!fs.existsSync(path.join(REPO, 'wrapper/dist/cli/main.js'))) throw new Error('wrapper/dist missing: npm run build');
}

/**
 * The appliance's form of Kiwi ID (scripts/build-artifact: one bundle, its own
 * Node, the launcher systemd runs) built into `dir`; the launcher's path.
 */
export function buildAppliance(dir: string): string {
  const built = spawnSync('bash', [path.join(REPO, 'scripts/build-artifact'), dir], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`scripts/build-artifact failed: ${built.stderr}`);
  return path.join(dir, 'opt/kiwi/bin/kiwi-id');
}

export interface Load {
  rps: number;
  requests: number;
  p50: number; // ms
  p99: number;
  failures: number;
}

const ms = (v: string, unit: string) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? NaN);

/**
 * Paces each wrk connection: `delay()` is wrk's Lua hook for the milliseconds
 * to wait before a connection's next request, and wrk starts a request's
 * clock when it is written, so the pause is not counted as latency.
 */
function pacingScript(delayMs: number): { file: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-bench-wrk-'));
  const file = path.join(dir, 'pace.lua');
  fs.writeFileSync(file, `function delay() return ${Math.round(delayMs)} end\n`);
  return { file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface WrkOptions {
  /** Called every 250 ms while wrk runs (e.g. to sample RSS). */
  onTick?: () => void;
  /**
   * Pace the load instead of sending as fast as the front answers: each
   * connection pauses connections/rate ms between requests (this rate if
   * answers were instant). Latency is then the front's own, not a queue's.
   */
  rate?: number;
}

export function wrk(port: number, urlPath: string, duration: number, connections: number, opts: WrkOptions = {}): Promise<Load> {
  const pace = opts.rate ? pacingScript((connections / opts.rate) * 1000) : null;
  return new Promise<Load>((resolve, reject) => {
    // Every front is reached by address; Host names the public origin, as a browser would.
    const args = ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', ...(pace ? ['-s', pace.file] : []), '-H', `Host: localhost:${port}`, `https://127.0.0.1:${port}${urlPath}`];
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const ticker = opts.onTick ? setInterval(opts.onTick, 250) : null;
    child.on('error', reject);
    child.on('exit', (code) => {
      if (ticker) clearInterval(ticker);
      const lat = (p: string) => {
        const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
        return m ? ms(m[1]!, m[2]!) : NaN;
      };
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const sockErrors = socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
      if (code !== 0 || !Number.isFinite(rps)) return reject(new Error(`wrk failed (${code}): ${out}`));
      resolve({ rps, requests, p50: lat('50'), p99: lat('99'), failures: non2xx + sockErrors });
    });
  }).finally(() => pace?.remove());
}

/** KIWI_PROF=DIR: the Node fronts write a --cpu-prof profile there when they stop (NODE_OPTIONS refuses --cpu-prof). */
export const profFlags = () => (process.env.KIWI_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KIWI_PROF}`] : []);

/** First boot of Kiwi ID and Kanidm with the harness; one log destination (stdout, to a file here), like nginx's access log. */
export async function initKiwi(node: KiwiNode): Promise<void> {
  await node.writeConfig();
  fs.writeFileSync(node.config, fs.readFileSync(node.config, 'utf8').replace(/^log_dir = .*$/m, ''));
  await node.init();
}

/** `kiwi-id run` with the phase's keys, its output in a file (as a service manager would take it). */
export async function runKiwi(node: KiwiNode, ph: Phase): Promise<ChildProcess> {
  const keys = `workers = ${ph.workers}\n` + (ph.heap === undefined ? '' : `heap_growing_percent = ${ph.heap}\n`);
  fs.writeFileSync(node.config, fs.readFileSync(node.config, 'utf8').replace(/^(workers|heap_growing_percent) = .*\n/gm, '') + keys);
  const outPath = path.join(node.root, 'kiwi-id.out');
  const out = fs.openSync(outPath, 'a', 0o600);
  const started = fs.fstatSync(out).size; // this run's output starts here, after earlier phases'
  const args = ['-c', node.config, 'run'];
  const [command, argv] = ph.launcher ? [ph.launcher, args] : [process.execPath, [...profFlags(), ...(ph.nodeFlags ?? []), path.join(REPO, 'wrapper/bin/kiwi-id.js'), ...args]];
  const child = spawn(command, argv, {
    stdio: ['ignore', out, out],
    env: { ...process.env, ...ph.env, HOME: path.join(node.root, 'cli-home') },
  });
  fs.closeSync(out);
  node.child = child;
  // The harness's node.get / node.metric need the node's CA; its start() sets this, and the bench starts the node itself.
  node.dispatcher ??= new Agent({ connect: { ca: fs.readFileSync(node.caPath) } });
  // This run's start-up output: its first MiB is plenty (an earlier phase's access log runs to hundreds of MB, never read).
  const log = () => {
    const fd = fs.openSync(outPath, 'r');
    try {
      const buf = Buffer.alloc(Math.min(fs.fstatSync(fd).size - started, 1 << 20));
      return buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, started)).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  };
  // Ready, and every worker listening (the primary logs "listening" once all are).
  await until('kiwi-id ready', async () => (await get(node.listenPort, '/readyz', node.caPath)) === 200 && log().includes('"msg":"listening"'), () =>
    child.exitCode !== null ? `kiwi-id run exited ${child.exitCode}: ${log().slice(-2000)}` : '',
  );
  return child;
}

const agents = new Map<string, Agent>();
/** GET through a keep-alive agent per CA (kept until closeAgents); the status code. */
export async function get(port: number, urlPath: string, caPath: string): Promise<number> {
  let agent = agents.get(caPath);
  if (!agent) agents.set(caPath, (agent = new Agent({ connect: { ca: fs.readFileSync(caPath), servername: 'localhost' } })));
  const res = await request(`https://127.0.0.1:${port}${urlPath}`, { dispatcher: agent, headers: { host: `localhost:${port}` } });
  await res.body.dump();
  return res.statusCode;
}

export async function until(what: string, ok: () => Promise<boolean>, dead: () => string, timeoutMs = 180_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const why = dead();
    if (why) throw new Error(why);
    if (await ok().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function closeAgents(): Promise<void> {
  for (const a of agents.values()) await a.close();
  agents.clear();
}
