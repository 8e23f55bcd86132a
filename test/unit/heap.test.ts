// lifecycle/heap.ts: `heap_growing_percent` reaches V8 at run time (Node
// refuses the flag in NODE_OPTIONS, so the wrapper sets it after start) and
// bounds how far the old generation grows over its live size.
//
// Each case runs in its own node process: a live set of ~35 MiB, then a
// churn of objects that live long enough to be promoted and then die, the
// pattern of a server under load. The largest old-generation size seen is
// compared between V8's own choice and the wrapper's default, both on the
// same machine in the same run; V8's ceiling is pinned with
// --max-old-space-size so its own growing factor may reach 4 on any host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { DEFAULT_HEAP_GROWING_PERCENT } from '../../wrapper/src/config/config.js';

const heapModule = path.resolve(import.meta.dirname, '../../wrapper/src/lifecycle/heap.ts');

function oldGenerationPeakMiB(percent: number): number {
  const script = `
    import v8 from 'node:v8';
    import { tuneHeapGrowth } from ${JSON.stringify(heapModule)};
    tuneHeapGrowth(${percent});
    const old = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_size;
    globalThis.live = Array.from({ length: 200_000 }, (_, i) => ({ i, s: 'live-' + i })); // kept to the end
    const ring = new Array(100_000);
    let peak = 0;
    for (let i = 0; i < 4_000_000; i++) {
      ring[i % ring.length] = { i, s: 'churn-' + i, a: [i] };
      if (i % 20_000 === 0) peak = Math.max(peak, old());
    }
    process.stdout.write(String(peak / 2 ** 20));`;
  const r = spawnSync(process.execPath, ['--max-old-space-size=4096', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout);
}

test('the default heap_growing_percent keeps the old generation well below where V8 alone lets it grow', () => {
  const v8Choice = oldGenerationPeakMiB(0);
  const tuned = oldGenerationPeakMiB(DEFAULT_HEAP_GROWING_PERCENT);
  assert.ok(tuned < 0.75 * v8Choice, `old generation peak: ${tuned.toFixed(0)} MiB with ${DEFAULT_HEAP_GROWING_PERCENT} %, ${v8Choice.toFixed(0)} MiB with V8's choice`);
});
