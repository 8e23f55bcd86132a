// WebAssembly stays on V8's baseline compiler (Liftoff) in a serving process.
//
// Why: the WebAssembly the wrapper runs is the HTTP/1.1 parser (llhttp) of
// undici and of Node's own fetch, which parses every response from Kanidm
// and the other origins. Once its parsing function is hot, V8 recompiles it
// with its optimising compiler (TurboFan) on a background thread, and that
// one compilation takes ~36 MiB of compiler memory in 32 KiB pieces within
// 0.2 s (strace of that thread's malloc arena, a second after start). It is
// freed at once, but glibc keeps most of it in the thread's arena (frees that
// small never make it hand memory back): ~10 MiB of the idle RSS in most
// starts was a compiler's scratch space. Liftoff's code parses a little more
// slowly: 1.4–3.4 µs more per response in a parser-only A/B, 142 → 146 µs of
// wrapper CPU per proxied request in bench/memory.ts (within its rounds'
// spread). README, Benchmarks "Memory", has the figures.
//
// Set at run time, before the first connection: undici compiles the parser
// lazily, on a client's first connection, and V8 reads the flag then.
import v8 from 'node:v8';

export function keepWebAssemblyOnBaselineTier(): void {
  v8.setFlagsFromString('--liftoff-only');
}
