// Process supervision with a scripted child (fixtures/status-server.mjs): start,
// CA-pinned health probe, restart after kill -9 with backoff, restart when not
// healthy in time, crash-loop report, clean and forced stop, and refusing to
// restart a binary that no longer matches its pin. Kanidm-specific behaviour
// (its startup, its data) is for test/integration.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../wrapper/src/telemetry/log.js';
import { localCertificate } from './harness/certs.js';
import { Supervisor } from '../../wrapper/src/upstream/supervisor.js';
import { undiciAgent, upstreamTls } from '../../wrapper/src/upstream/tls.js';
import { freePort } from '../e2e/net.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-supervisor-'));
const tls = localCertificate(root, 'upstream');
const running: Supervisor[] = [];
after(async () => {
  for (const s of running) await s.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

const logLines: string[] = [];
const log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => (logLines.push(String(c)), cb()) }) });

let n = 0;
async function supervisor(mode: string, extra: { timeoutMs?: number; bin?: string; compatibilityFile?: string; stopTimeoutMs?: number } = {}) {
  const port = await freePort();
  const config = path.join(root, `config-${++n}.json`);
  fs.writeFileSync(config, JSON.stringify({ port, cert: tls.certPath, key: tls.keyPath, mode }));
  const upstreamAddr = `https://127.0.0.1:${port}`;
  const s = new Supervisor({
    bin: extra.bin ?? path.resolve('test/component/fixtures/status-server.mjs'),
    config,
    upstreamAddr,
    dispatcher: undiciAgent(upstreamTls(upstreamAddr, tls.caPath)),
    compatibilityFile: extra.compatibilityFile ?? null,
    intervalMs: 100,
    timeoutMs: extra.timeoutMs ?? 5_000,
    stopTimeoutMs: extra.stopTimeoutMs ?? 2_000,
    backoffMinMs: 50,
    log,
  });
  running.push(s);
  return { s, config };
}

const once = (s: Supervisor, event: string, ms = 10_000) =>
  new Promise<unknown>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    s.once(event, (v) => (clearTimeout(t), resolve(v)));
  });

test('starts the child, probes /status over the pinned CA, forwards its output redacted', async () => {
  const { s } = await supervisor('ok');
  await s.start();
  await s.waitHealthy(10_000);
  assert.equal(s.state, 'healthy');
  const out = logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'upstream output');
  assert.ok(out.some((l) => /fixture starting mode=ok/.test(l.upstream_line)));
  assert.equal(logLines.join('').includes('hunter2-fixture'), false, 'child output must be redacted');
  await s.stop();
  assert.equal(s.state, 'stopped');
});

test('kill -9: unhealthy at once, restarted with backoff, healthy again', async () => {
  const { s } = await supervisor('ok');
  await s.start();
  await s.waitHealthy(10_000);
  const exited = once(s, 'exit');
  process.kill(s.pid!, 'SIGKILL');
  assert.deepEqual(await exited, { code: undefined, signal: 'SIGKILL' });
  assert.equal(s.healthy, false, 'proxy must see the upstream as down right after the crash');
  await once(s, 'healthy');
  assert.equal(s.restarts, 1);
  assert.equal(s.crashLoop, false);
  await s.stop();
});

test('not healthy within health_check_timeout: killed and restarted', async () => {
  const { s } = await supervisor('unhealthy', { timeoutMs: 500 });
  await s.start();
  await once(s, 'restart', 5_000);
  assert.ok(logLines.some((l) => l.includes('upstream not healthy within timeout')));
  await s.stop();
});

test('a child that keeps exiting is reported as a crash loop, not hidden', async () => {
  const { s } = await supervisor('exit');
  await s.start();
  const deadline = Date.now() + 10_000;
  while (!s.crashLoop && Date.now() < deadline) await once(s, 'exit');
  assert.equal(s.crashLoop, true);
  assert.ok(logLines.some((l) => l.includes('upstream is crash-looping')));
  await s.stop();
});

test('stop: SIGTERM, and SIGKILL when the child ignores it', async () => {
  const { s } = await supervisor('stubborn', { stopTimeoutMs: 300 });
  await s.start();
  await s.waitHealthy(10_000);
  const pid = s.pid!;
  const t0 = Date.now();
  await s.stop();
  assert.ok(Date.now() - t0 >= 250, 'waited for the grace period before SIGKILL');
  assert.throws(() => process.kill(pid, 0), /ESRCH/, 'child is gone');
  assert.equal(s.state, 'stopped');
});

test('a binary changed on disk after start is not restarted (pin mismatch is fatal)', async () => {
  const bin = path.join(root, 'kanidmd');
  fs.copyFileSync('test/component/fixtures/status-server.mjs', bin);
  fs.chmodSync(bin, 0o755);
  const compat = path.join(root, 'compatibility.toml');
  const sum = 'sha256:' + createHash('sha256').update(fs.readFileSync(bin)).digest('hex');
  fs.writeFileSync(compat, `[upstream]\nname = "kanidm"\nversion = "test"\n[upstream.checksums]\n"bin/kanidmd" = "${sum}"\n`);
  const { s } = await supervisor('ok', { bin, compatibilityFile: compat });
  await s.start();
  await s.waitHealthy(10_000);
  fs.appendFileSync(bin, '// tampered\n');
  const fatal = once(s, 'fatal');
  process.kill(s.pid!, 'SIGKILL');
  const err = (await fatal) as Error;
  assert.match(err.message, /does not match its pin: expected sha256:[0-9a-f]{64}/);
  assert.equal(s.state, 'stopped');
});
