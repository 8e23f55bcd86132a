// How far V8 lets a serving process's heap grow between full collections
// (config key `heap_growing_percent`).
//
// Why: V8 schedules the next full collection when the old generation reaches
// its live size times a "growing factor" it picks between 1.1 and 4, and it
// allows up to 4 whenever the maximum heap is large — on any host with
// 16 GiB or more. The wrapper's live heap is small (~25 MiB: code and the
// libraries' tables) and nearly all it allocates under load is garbage within
// a request, so by default the old generation climbs to ~95 MiB of mostly
// garbage before a full collection, and the process to ~210 MiB under proxy
// load. A fixed factor of 1.3 holds that peak near 145 MiB; the price is
// more frequent full collections: 7–13 % more CPU per proxied request when
// load arrives right after a start (bench/memory.ts), within the noise once
// V8 has settled (bench/proxy.ts), 0–9 % per refresh grant (README, Benchmarks).
//
// Set at run time because Node refuses this V8 flag in NODE_OPTIONS; V8 reads
// it at every collection, so it takes effect from the next one.
import v8 from 'node:v8';

/** `percent` 0 leaves the choice to V8. */
export function tuneHeapGrowth(percent: number): void {
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}
