// The wrapper's memory, Kanidm excluded, on a real node (Kanidm 1.11.1 via
// `kiwi-id init` + `run`): idle once settled after a start, and at its peak
// when full load arrives right after a start (a restart in busy hours): the
// npm form (wrapper/dist) with Kiwi ID's default `heap_growing_percent`, the
// appliance's form (one bundle, its own Node, the launcher systemd runs) and
// the npm form with V8's own heap growth (`heap_growing_percent = 0`), in
// alternating rounds of the same run.
//
// Each round starts the wrapper twice per variant: once to let it settle
// idle (bench/proc.ts settledRssMiB), once to load it at once with wrk on
// `/status` then `/ui/login` while RSS is sampled every 250 ms. Also printed:
// the wrapper's CPU per request under that load, so what the memory costs in
// CPU is in the same run. Figures are printed, never asserted; the run fails
// only if a request failed.
//
//   npm run bench:memory -- [seconds=10] [connections=32] [rounds=3] [variants=default,appliance,0]
// Needs: wrk (apt-get install wrk), the pinned Kanidm (scripts/install-upstream
// --prefix .kiwi-dev/upstream), a built wrapper (the npm script builds it).
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KiwiNode } from '../test/integration/harness/kiwi-node.js';
import { addEnvSetting, buildAppliance, closeAgents, initKiwi, need, needNodeParts, runKiwi, wrk, type Phase } from './kiwi-front.js';
import { cpuSeconds, rssMiB, settledRssMiB, tree } from './proc.js';

const seconds = Number(process.argv[2] ?? 10);
const connections = Number(process.argv[3] ?? 32);
const rounds = Number(process.argv[4] ?? 3);
/**
 * The wrappers to compare, each settings joined by "+": "default" (the key
 * left out) or a `heap_growing_percent` value, "appliance" (the appliance's
 * bundle and launcher, scripts/build-artifact, instead of wrapper/dist), and
 * NAME=VALUE for the wrapper's environment.
 */
interface Variant {
  name: string;
  heap?: number;
  appliance: boolean;
  env: Record<string, string>;
}
function variant(spec: string): Variant {
  const v: Variant = { name: '', appliance: false, env: {} };
  const names: string[] = [];
  for (const part of spec.split('+')) {
    if (part === 'appliance') v.appliance = true;
    else if (addEnvSetting(part, v.env)) names.push(part);
    else if (part !== 'default') {
      v.heap = Number(part);
      if (!Number.isInteger(v.heap)) throw new Error(`variant ${spec}: "${part}" is not default, appliance, NAME=VALUE or a heap_growing_percent`);
      names.push(`heap_growing_percent = ${part}`);
    }
  }
  v.name = [v.appliance ? 'appliance' : 'npm form', ...names].join(' + ');
  return v;
}
const VARIANTS = (process.argv[5] ?? 'default,appliance,0').split(',').map(variant);

need('wrk', 'apt-get install wrk');
needNodeParts();

interface Sample {
  idle: number; // MiB, settled after a start
  heap: number; // MiB of V8's heap in use then (prom-client's nodejs_heap_size_used_bytes)
  peak: number; // MiB, under load right after a start
  cpu: number; // µs of the wrapper's CPU per request under that load
  failures: number;
}

const wrapperPids = (kiwi: ChildProcess) => tree(kiwi.pid!, 'kanidmd');

let launcher: string | undefined;
const phaseOf = (v: Variant): Phase => ({ workers: 1, heap: v.heap, env: v.env, launcher: v.appliance ? launcher : undefined });

async function idleOnce(node: KiwiNode, v: Variant): Promise<Pick<Sample, 'idle' | 'heap'>> {
  const kiwi = await runKiwi(node, phaseOf(v));
  try {
    const idle = await settledRssMiB(() => wrapperPids(kiwi));
    // RSS also holds what malloc kept from start-up; V8's own figure says what the JavaScript side holds.
    const heap = ((await node.metric('kiwi_nodejs_heap_size_used_bytes')) ?? NaN) / 2 ** 20;
    return { idle, heap };
  } finally {
    await node.stop('SIGTERM');
  }
}

async function loadOnce(node: KiwiNode, v: Variant): Promise<Omit<Sample, 'idle' | 'heap'>> {
  const kiwi = await runKiwi(node, phaseOf(v));
  try {
    let peak = rssMiB(wrapperPids(kiwi));
    const sample = () => (peak = Math.max(peak, rssMiB(wrapperPids(kiwi))));
    const cpu0 = cpuSeconds(wrapperPids(kiwi));
    let requests = 0;
    let failures = 0;
    for (const p of ['/status', '/ui/login']) {
      const load = await wrk(node.listenPort, p, seconds, connections, { onTick: sample });
      requests += load.requests;
      failures += load.failures;
    }
    return { peak, cpu: ((cpuSeconds(wrapperPids(kiwi)) - cpu0) / requests) * 1e6, failures };
  } finally {
    await node.stop('SIGTERM');
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const node = new KiwiNode({ name: 'bench-memory' });
let cleaned: Promise<void> | null = null;
const applianceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-bench-appliance-'));
const cleanup = () => (cleaned ??= node.close().then(closeAgents).finally(() => fs.rmSync(applianceDir, { recursive: true, force: true })));
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void cleanup().finally(() => process.exit(130)));
try {
  if (VARIANTS.some((v) => v.appliance)) launcher = buildAppliance(applianceDir);
  await initKiwi(node);
  console.log(`wrapper RSS (Kanidm excluded), wrk -t1 -c${connections}, ${seconds}s on /status then ${seconds}s on /ui/login right after a start, ${rounds} rounds alternating, ${os.cpus().length} cores`);
  const results = new Map<string, Sample[]>(VARIANTS.map((v) => [v.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const v of VARIANTS) {
      const s = { ...(await idleOnce(node, v)), ...(await loadOnce(node, v)) };
      results.get(v.name)!.push(s);
      console.log(`  round ${r + 1}  ${v.name.padEnd(40)} idle ${s.idle.toFixed(0)} MiB (V8 heap ${s.heap.toFixed(1)})   peak under load ${s.peak.toFixed(0)} MiB   wrapper CPU ${s.cpu.toFixed(0)} µs/req${s.failures ? `   FAILED REQUESTS ${s.failures}` : ''}`);
      if (s.failures) process.exitCode = 1;
    }
  }
  console.log(`medians over ${rounds} rounds:`);
  for (const v of VARIANTS) {
    const xs = results.get(v.name)!;
    const m = (k: keyof Sample) => median(xs.map((x) => x[k]));
    console.log(`  ${v.name.padEnd(40)} idle ${m('idle').toFixed(0)} MiB (V8 heap ${m('heap').toFixed(1)})   peak under load ${m('peak').toFixed(0)} MiB   wrapper CPU ${m('cpu').toFixed(0)} µs/req`);
  }
} finally {
  await cleanup();
}
