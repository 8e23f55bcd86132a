// `kiwi-id run` killed with SIGKILL (OOM killer, kill -9): the kernel gives its
// upstream no signal, so that process lives on, re-parented, still holding the
// upstream port. The next `kiwi-id run` must find it through the pid file and
// stop it before starting its own, never run a second one next to it nor take
// it for its own. The upstream is the scripted child (this is about the
// wrapper's process handling); test/integration does the same with Kanidm.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isAlive, portInUse, readPidFile } from '../../wrapper/src/upstream/orphan.js';
import { closeAll } from './harness/cleanup.js';
import { endChild } from './harness/processes.js';
import { WrapperProcess } from './harness/wrapper-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-wrapper-kill-'));
const fromSource = [process.execPath, '--import', 'tsx', path.resolve('wrapper/src/cli/main.ts')];
const w = new WrapperProcess(root, fromSource);
after(() => closeAll(() => w.close(), () => fs.rmSync(root, { recursive: true, force: true })));

const upstreamStarts = () => w.lines().filter((l) => l.msg === 'upstream started').map((l) => l.pid as number);

test('SIGKILL of the wrapper leaves its upstream running; the next start stops that one and recovers cleanly', async () => {
  await w.start();
  const orphan = readPidFile(w.pidFile)!.upstream;
  assert.equal(orphan.pid, upstreamStarts().at(-1), 'the pid file names the running upstream');

  const first = w.child;
  assert.equal(await endChild(first, 'SIGKILL'), null);
  assert.equal(first.signalCode, 'SIGKILL');
  // The shape of the problem: the upstream survived its wrapper and still holds the port.
  assert.equal(isAlive(orphan), true, 'upstream survived the wrapper');
  assert.equal(await portInUse(`https://127.0.0.1:${w.upstreamPort}`), true);

  const from = w.lines().length;
  await w.launch(); // same config, same data_dir
  const log = w.lines().slice(from);
  const stopped = log.find((l) => l.msg === 'stopping the kanidmd left running by an earlier wrapper');
  assert.equal(stopped?.pid, orphan.pid, 'the leftover was recognised through the pid file');
  assert.equal(isAlive(orphan), false, 'the leftover is gone');
  const fresh = upstreamStarts().at(-1)!;
  assert.notEqual(fresh, orphan.pid, 'a new upstream was started, the old one not adopted');
  assert.ok(
    log.findIndex((l) => l.msg === 'earlier kanidmd stopped') < log.findIndex((l) => l.msg === 'upstream started'),
    'the old one was gone before the new one started',
  );
  assert.equal(readPidFile(w.pidFile)!.upstream.pid, fresh);
  assert.equal((await w.get('/status')).text, 'true', 'proxied to the new upstream');
  assert.equal(log.some((l) => /upstream exited unexpectedly|crash-looping/.test(String(l.msg))), false, 'no failed second instance');
});

test('a second `kiwi-id run` on the same config refuses while the first runs, naming it', async () => {
  const running = w.child;
  assert.equal(running.exitCode, null, 'needs the wrapper of the test before');
  const upstream = upstreamStarts().at(-1)!;
  const second = new WrapperProcess(root, fromSource); // same files: nothing to prepare
  const r = await second.runToExit();
  assert.equal(r.code, 1, r.output);
  assert.match(r.output, new RegExp(`kiwi-id: cannot start: .*upstream\\.pid: another kiwi-id \\(pid ${running.pid}\\) is running and supervises kanidmd pid ${upstream}`));
  assert.equal((await w.get('/readyz')).status, 200, 'the first one is undisturbed');
  assert.equal(readPidFile(w.pidFile)!.upstream.pid, upstream);
});

test('SIGTERM afterwards: exits 0, the upstream stops with it, no pid file left', async () => {
  const upstream = readPidFile(w.pidFile)!.upstream;
  assert.equal(await w.stop(), 0, w.out.join('').slice(-2000));
  assert.equal(isAlive(upstream), false);
  assert.equal(fs.existsSync(w.pidFile), false);
});
