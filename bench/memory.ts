// The wrapper's memory, Kanidm excluded, on a real node (Kanidm 1.11.1 via
// `kiwi-id init` + `run`): idle once settled after a start, and at its peak
// when full load arrives right after a start (a restart in busy hours), with
// Kiwi ID's default `heap_growing_percent` and with V8's own heap growth
// (`heap_growing_percent = 0`), in alternating rounds of the same run.
//
// Each round starts the wrapper twice per variant: once to let it settle
// idle (bench/proc.ts settledRssMiB), once to load it at once with wrk on
// `/status` then `/ui/login` while RSS is sampled every 250 ms. Also printed:
// the wrapper's CPU per request under that load, so what the memory costs in
// CPU is in the same run. Figures are printed, never asserted; the run fails
// only if a request failed.
//
//   npm run bench:memory -- [seconds=10] [connections=32] [rounds=3] [variants=default,0]
// Needs: wrk (apt-get install wrk), the pinned Kanidm (scripts/install-upstream
// --prefix .kiwi-dev/upstream), a built wrapper (the npm script builds it).
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { KiwiNode } from '../test/integration/harness/kiwi-node.js';
import { closeAgents, initKiwi, need, needNodeParts, runKiwi, wrk } from './kiwi-front.js';
import { cpuSeconds, rssMiB, settledRssMiB, tree } from './proc.js';

const seconds = Number(process.argv[2] ?? 10);
const connections = Number(process.argv[3] ?? 32);
const rounds = Number(process.argv[4] ?? 3);
/** `heap_growing_percent` values to compare ("default": the key left out). */
const VARIANTS = (process.argv[5] ?? 'default,0').split(',').map((v) =>
  v === 'default' ? { name: 'default heap_growing_percent', heap: undefined } : { name: `heap_growing_percent = ${Number(v)}`, heap: Number(v) },
);

need('wrk', 'apt-get install wrk');
needNodeParts();

interface Sample {
  idle: number; // MiB, settled after a start
  peak: number; // MiB, under load right after a start
  cpu: number; // µs of the wrapper's CPU per request under that load
  failures: number;
}

const wrapperPids = (kiwi: ChildProcess) => tree(kiwi.pid!, 'kanidmd');

async function idleOnce(node: KiwiNode, heap: number | undefined): Promise<number> {
  const kiwi = await runKiwi(node, { workers: 1, heap });
  try {
    return await settledRssMiB(() => wrapperPids(kiwi));
  } finally {
    await node.stop('SIGTERM');
  }
}

async function loadOnce(node: KiwiNode, heap: number | undefined): Promise<Omit<Sample, 'idle'>> {
  const kiwi = await runKiwi(node, { workers: 1, heap });
  try {
    let peak = rssMiB(wrapperPids(kiwi));
    const sample = () => (peak = Math.max(peak, rssMiB(wrapperPids(kiwi))));
    const cpu0 = cpuSeconds(wrapperPids(kiwi));
    let requests = 0;
    let failures = 0;
    for (const p of ['/status', '/ui/login']) {
      const load = await wrk(node.listenPort, p, seconds, connections, sample);
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
const cleanup = () => (cleaned ??= node.close().then(closeAgents));
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void cleanup().finally(() => process.exit(130)));
try {
  await initKiwi(node);
  console.log(`wrapper RSS (Kanidm excluded), wrk -t1 -c${connections}, ${seconds}s on /status then ${seconds}s on /ui/login right after a start, ${rounds} rounds alternating, ${os.cpus().length} cores`);
  const results = new Map<string, Sample[]>(VARIANTS.map((v) => [v.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const v of VARIANTS) {
      const idle = await idleOnce(node, v.heap);
      const s = { idle, ...(await loadOnce(node, v.heap)) };
      results.get(v.name)!.push(s);
      console.log(`  round ${r + 1}  ${v.name.padEnd(30)} idle ${s.idle.toFixed(0)} MiB   peak under load ${s.peak.toFixed(0)} MiB   wrapper CPU ${s.cpu.toFixed(0)} µs/req${s.failures ? `   FAILED REQUESTS ${s.failures}` : ''}`);
      if (s.failures) process.exitCode = 1;
    }
  }
  console.log(`medians over ${rounds} rounds:`);
  for (const v of VARIANTS) {
    const xs = results.get(v.name)!;
    const m = (k: keyof Sample) => median(xs.map((x) => x[k]));
    console.log(`  ${v.name.padEnd(30)} idle ${m('idle').toFixed(0)} MiB   peak under load ${m('peak').toFixed(0)} MiB   wrapper CPU ${m('cpu').toFixed(0)} µs/req`);
  }
} finally {
  await cleanup();
}
