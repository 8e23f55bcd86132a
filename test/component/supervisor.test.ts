// Process supervision with a scripted child (fixtures/status-server.mjs): start,
// CA-pinned health probe, restart after kill -9 with backoff, restart when not
// healthy in time, crash-loop report, clean and forced stop, and refusing to
// restart a binary that no longer matches its pin; the pid file and what the
// first start does about a kanidmd left by an earlier wrapper. Kanidm-specific
// behaviour (its startup, its data) is for test/integration.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../wrapper/src/telemetry/log.js';
import { localCertificate } from './harness/certs.js';
import { Supervisor } from '../../wrapper/src/upstream/supervisor.js';
import { identify, isAlive, portInUse, readPidFile, writePidFile } from '../../wrapper/src/upstream/orphan.js';
import { undiciAgent, upstreamTls } from '../../wrapper/src/upstream/tls.js';
import { freePort } from '../e2e/net.js';
import { closeAll } from './harness/cleanup.js';
import { endChild, killAllWith } from './harness/processes.js';
import { nextEvent, waitFor } from './harness/wait.js';

const FIXTURE = path.resolve('test/component/fixtures/status-server.mjs');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-supervisor-'));
const tls = localCertificate(root, 'upstream');
const running: Supervisor[] = [];
after(() =>
  closeAll(
    ...running.map((s) => () => s.stop()),
    () => killAllWith(root), // scripted upstreams started by hand below
    () => fs.rmSync(root, { recursive: true, force: true }),
  ),
);

const logLines: string[] = [];
const log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => (logLines.push(String(c)), cb()) }) });

let n = 0;
/** A config for the scripted child on a free port. */
async function fixtureConfig(mode: string) {
  const port = await freePort();
  const config = path.join(root, `config-${++n}.json`);
  fs.writeFileSync(config, JSON.stringify({ port, cert: tls.certPath, key: tls.keyPath, mode }));
  return { port, config };
}

interface Extra { timeoutMs?: number; bin?: string; compatibilityFile?: string; stopTimeoutMs?: number; pidFile?: string; fixture?: { port: number; config: string } }
async function supervisor(mode: string, extra: Extra = {}) {
  const { port, config } = extra.fixture ?? (await fixtureConfig(mode));
  const upstreamAddr = `https://127.0.0.1:${port}`;
  const s = new Supervisor({
    bin: extra.bin ?? FIXTURE,
    config,
    upstreamAddr,
    dispatcher: undiciAgent(upstreamTls(upstreamAddr, tls.caPath)),
    compatibilityFile: extra.compatibilityFile ?? null,
    intervalMs: 100,
    timeoutMs: extra.timeoutMs ?? 30_000, // generous: only the test of the timeout itself uses a short one
    stopTimeoutMs: extra.stopTimeoutMs ?? 2_000,
    backoffMinMs: 50,
    pidFile: extra.pidFile ?? null,
    log,
  });
  running.push(s);
  return { s, config, port };
}

const once = (s: Supervisor, event: string) => nextEvent(s, event, { what: `supervisor event "${event}"` });
const HEALTHY_MS = 30_000; // only how long a broken test takes to fail

test('starts the child, probes /status over the pinned CA, forwards its output redacted', async () => {
  const { s } = await supervisor('ok');
  await s.start();
  await s.waitHealthy(HEALTHY_MS);
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
  await s.waitHealthy(HEALTHY_MS);
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
  await once(s, 'restart');
  assert.ok(logLines.some((l) => l.includes('upstream not healthy within timeout')));
  await s.stop();
});

test('a child that keeps exiting is reported as a crash loop, not hidden', async () => {
  const { s } = await supervisor('exit');
  await s.start();
  while (!s.crashLoop) await once(s, 'exit');
  assert.equal(s.crashLoop, true);
  assert.ok(logLines.some((l) => l.includes('upstream is crash-looping')));
  await s.stop();
});

test('stop: SIGTERM, and SIGKILL when the child ignores it', async () => {
  const { s } = await supervisor('stubborn', { stopTimeoutMs: 300 });
  await s.start();
  await s.waitHealthy(HEALTHY_MS);
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
  await s.waitHealthy(HEALTHY_MS);
  fs.appendFileSync(bin, '// tampered\n');
  const fatal = once(s, 'fatal');
  process.kill(s.pid!, 'SIGKILL');
  const err = (await fatal) as Error;
  assert.match(err.message, /does not match its pin: expected sha256:[0-9a-f]{64}/);
  assert.equal(s.state, 'stopped');
});

/** The scripted child started by hand, as a wrapper killed earlier would have left it. */
async function leftover(t: TestContext, config: string, port: number) {
  const child = spawn(FIXTURE, ['server', '-c', config], { stdio: 'ignore' });
  t.after(() => endChild(child, 'SIGKILL'));
  await waitFor(() => portInUse(`https://127.0.0.1:${port}`), { what: 'the leftover upstream to listen' });
  return identify(child.pid!)!;
}

/** A process that exists only to be a live pid that is not kanidmd. */
function bystander(t: TestContext) {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  t.after(() => endChild(child, 'SIGKILL'));
  return identify(child.pid!)!;
}

test('pid file: names the running child with its start time, follows restarts, is removed on stop', async () => {
  const pidFile = path.join(root, 'pidfile-1', 'upstream.pid');
  const { s, config } = await supervisor('ok', { pidFile });
  await s.start();
  await s.waitHealthy(HEALTHY_MS);
  const first = readPidFile(pidFile)!;
  assert.deepEqual(first.upstream, identify(s.pid!));
  assert.deepEqual(first.wrapper, identify(process.pid));
  assert.equal(first.config, config);
  assert.equal(fs.statSync(pidFile).mode & 0o777, 0o600);
  const exited = once(s, 'exit');
  process.kill(s.pid!, 'SIGKILL');
  await exited;
  await once(s, 'healthy');
  assert.deepEqual(readPidFile(pidFile)!.upstream, identify(s.pid!), 'the restarted child is recorded');
  await s.stop();
  assert.equal(fs.existsSync(pidFile), false);
});

test('a kanidmd left by an earlier wrapper (pid file) is stopped before the new one starts: never two', async (t) => {
  const fixture = await fixtureConfig('stubborn'); // ignores SIGTERM: needs the SIGKILL after the grace period
  const pidFile = path.join(root, 'pidfile-2', 'upstream.pid');
  const orphan = await leftover(t, fixture.config, fixture.port);
  // What the killed wrapper left: its own (now dead) identity and its child's.
  writePidFile(pidFile, { wrapper: { pid: 999_999_999, start: '1' }, upstream: orphan, bin: FIXTURE, config: fixture.config });
  const { s } = await supervisor('stubborn', { pidFile, fixture, stopTimeoutMs: 300 });
  await s.start();
  assert.equal(isAlive(orphan), false, 'the leftover is gone');
  await s.waitHealthy(HEALTHY_MS);
  assert.notEqual(s.pid, orphan.pid);
  assert.deepEqual(readPidFile(pidFile)!.upstream, identify(s.pid!));
  const warned = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === 'stopping the kanidmd left running by an earlier wrapper');
  assert.equal(warned?.pid, orphan.pid);
  await s.stop();
});

test('a pid file naming a pid now used by another program: that process is left alone', async (t) => {
  const other = bystander(t);
  const pidFile = path.join(root, 'pidfile-3', 'upstream.pid');
  // Same pid and even the same start time, but not `kanidmd server -c CONFIG`.
  writePidFile(pidFile, { wrapper: { pid: 999_999_999, start: '1' }, upstream: other, bin: FIXTURE, config: '/nowhere.json' });
  const { s } = await supervisor('ok', { pidFile });
  await s.start();
  await s.waitHealthy(HEALTHY_MS);
  assert.equal(isAlive(other), true, 'an unrelated process was killed');
  assert.ok(logLines.some((l) => l.includes('stale upstream pid file')));
  await s.stop();
  // A recycled pid with another start time is never matched either.
  writePidFile(pidFile, { wrapper: { pid: 999_999_999, start: '1' }, upstream: { pid: other.pid, start: '1' }, bin: FIXTURE, config: '/nowhere.json' });
  const again = await supervisor('ok', { pidFile });
  await again.s.start();
  assert.equal(isAlive(other), true);
  await again.s.stop();
});

test('a pid file naming a live wrapper: refuses, never a second supervisor', async (t) => {
  const otherWrapper = bystander(t);
  const fixture = await fixtureConfig('ok');
  const pidFile = path.join(root, 'pidfile-4', 'upstream.pid');
  const upstream = await leftover(t, fixture.config, fixture.port);
  writePidFile(pidFile, { wrapper: otherWrapper, upstream, bin: FIXTURE, config: fixture.config });
  const { s } = await supervisor('ok', { pidFile, fixture });
  await assert.rejects(s.start(), new RegExp(`another kiwi-id \\(pid ${otherWrapper.pid}\\) is running and supervises kanidmd pid ${upstream.pid}`));
  assert.equal(s.pid, undefined, 'nothing was started');
  assert.equal(isAlive(upstream), true, 'the other wrapper\'s kanidmd was not touched');
});

test('a kanidmd with this config that no pid file records: refused, named, not killed', async (t) => {
  const fixture = await fixtureConfig('ok');
  const stray = await leftover(t, fixture.config, fixture.port);
  const { s } = await supervisor('ok', { pidFile: path.join(root, 'pidfile-5', 'upstream.pid'), fixture });
  await assert.rejects(s.start(), new RegExp(`kanidmd is already running with ${fixture.config} \\(pid ${stray.pid}\\).*refusing to start a second instance`));
  assert.equal(s.pid, undefined);
  assert.equal(isAlive(stray), true);
});

test('the upstream port held by some other program: refused, naming the address', async (t) => {
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => squatter.close(r)));
  const port = (squatter.address() as net.AddressInfo).port;
  const fixture = await fixtureConfig('ok');
  fs.writeFileSync(fixture.config, JSON.stringify({ port, cert: tls.certPath, key: tls.keyPath, mode: 'ok' }));
  const { s } = await supervisor('ok', { fixture: { port, config: fixture.config } });
  await assert.rejects(s.start(), new RegExp(`upstream_addr 127\\.0\\.0\\.1:${port} is already in use by another process`));
  assert.equal(s.pid, undefined);
});
