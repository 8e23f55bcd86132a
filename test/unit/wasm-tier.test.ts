// lifecycle/wasm-tier.ts: once the serving process has called it, hot
// WebAssembly stays on V8's baseline tier (Liftoff) instead of being
// recompiled by TurboFan, whose compiler memory malloc keeps (the module's
// comment has the measurement).
//
// Each case runs in its own node process with V8's test natives, which tell
// which tier a wasm function's code is on. The control shows that the same
// hot loop does reach TurboFan without the call — and how many calls that
// took on this machine, so the case with the call runs ten times as many.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const tierModule = path.resolve(import.meta.dirname, '../../wrapper/src/lifecycle/wasm-tier.ts');

/** Calls a tiny exported wasm function up to `maxCalls` times, stopping at TurboFan; where it ended. */
function hotLoop(keepBaseline: boolean, maxCalls: number): { calls: number; liftoff: boolean; turbofan: boolean } {
  const script = `
    import { keepWebAssemblyOnBaselineTier } from ${JSON.stringify(tierModule)};
    if (${keepBaseline}) keepWebAssemblyOnBaselineTier();
    // (module (func (export "f") (param i32) (result i32) local.get 0 i32.const 1 i32.add))
    const bytes = new Uint8Array([0,0x61,0x73,0x6d,1,0,0,0, 1,6,1,0x60,1,0x7f,1,0x7f, 3,2,1,0, 7,5,1,1,0x66,0,0, 0x0a,9,1,7,0,0x20,0,0x41,1,0x6a,0x0b]);
    const f = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f;
    let calls = 0;
    while (calls < ${maxCalls} && !%IsTurboFanFunction(f)) for (let i = 0; i < 1000; i++) calls = f(calls);
    process.stdout.write(JSON.stringify({ calls, liftoff: %IsLiftoffFunction(f), turbofan: %IsTurboFanFunction(f) }));`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('hot WebAssembly stays on Liftoff in a serving process, where V8 alone would recompile it with TurboFan', () => {
  const control = hotLoop(false, 1e9);
  assert.ok(control.turbofan, `without the setting the function should reach TurboFan: ${JSON.stringify(control)}`);
  const kept = hotLoop(true, Math.max(10 * control.calls, 1e6));
  assert.deepEqual({ liftoff: kept.liftoff, turbofan: kept.turbofan }, { liftoff: true, turbofan: false }, `after ${kept.calls} calls`);
});
