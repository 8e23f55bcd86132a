// The pieces the supervisor uses to tell "a kanidmd this wrapper started
// earlier" from anything else: process identity (pid + start time from
// /proc), the command line match, the pid file, the port probe. The whole
// behaviour (stop a leftover, refuse the rest) is in test/component.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  identify,
  isAlive,
  portInUse,
  processStart,
  readPidFile,
  removePidFile,
  runsUpstream,
  writePidFile,
} from '../../wrapper/src/upstream/orphan.js';
import { endChild } from '../component/harness/processes.js';
import { waitFor } from '../component/harness/wait.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-orphan-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('identity: a live process has a start time; an exited one has none', () => {
  const self = identify(process.pid)!;
  assert.match(self.start, /^\d+$/);
  assert.equal(isAlive(self), true);
  assert.equal(isAlive({ pid: process.pid, start: String(Number(self.start) + 1) }), false, 'same pid, other start: another process');
  const exited = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  assert.equal(processStart(Number(exited.stdout)), null);
});

test('identity: a command name with spaces and parentheses does not confuse the /proc parser', async (t) => {
  const odd = path.join(dir, 'a) (b c');
  fs.copyFileSync(process.execPath, odd);
  fs.chmodSync(odd, 0o755);
  const child = spawn(odd, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  t.after(() => endChild(child, 'SIGKILL'));
  const p = await waitFor(() => identify(child.pid!), { what: 'the child in /proc' });
  assert.equal(fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').includes('(a) (b c)'), true);
  assert.match(p.start, /^\d+$/);
  assert.ok(Number(p.start) >= Number(identify(process.pid)!.start), 'started after this process');
});

test('runsUpstream: only `BIN server -c CONFIG`, also for a script run through its interpreter', async (t) => {
  const bin = path.join(dir, 'kanidmd');
  fs.writeFileSync(bin, '#!/usr/bin/env node\nsetInterval(() => {}, 1 << 30);\n', { mode: 0o755 });
  const config = path.join(dir, 'server.toml');
  const child = spawn(bin, ['server', '-c', config], { stdio: 'ignore' });
  t.after(() => endChild(child, 'SIGKILL'));
  await waitFor(() => runsUpstream(child.pid!, bin, config), { what: 'the child to run the script' });
  assert.equal(runsUpstream(child.pid!, bin, path.join(dir, 'other.toml')), false, 'other config');
  assert.equal(runsUpstream(child.pid!, path.join(dir, 'other-bin'), config), false, 'other binary');
  assert.equal(runsUpstream(process.pid, bin, config), false);
});

test('pid file: round trip, 0600, garbage reads as none, removal only of the record it names', () => {
  const file = path.join(dir, 'data', 'upstream.pid');
  assert.equal(readPidFile(file), null);
  const record = { wrapper: { pid: 10, start: '100' }, upstream: { pid: 11, start: '101' }, bin: '/opt/upstream/bin/kanidmd', config: '/etc/kiwi/server.toml' };
  writePidFile(file, record);
  assert.deepEqual(readPidFile(file), record);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  removePidFile(file, { pid: 12, start: '102' });
  assert.deepEqual(readPidFile(file), record, 'a newer record is not removed for an older child');
  removePidFile(file, record.upstream);
  assert.equal(fs.existsSync(file), false);
  for (const garbage of ['', 'not json', '{"wrapper":{"pid":-1,"start":"1"}}', JSON.stringify({ ...record, upstream: { pid: 'x' } })]) {
    fs.writeFileSync(file, garbage);
    assert.equal(readPidFile(file), null, garbage);
  }
});

test('portInUse: true while something listens, false once it is closed', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  assert.equal(await portInUse(`https://127.0.0.1:${port}`), true);
  await new Promise((r) => server.close(r));
  assert.equal(await portInUse(`https://127.0.0.1:${port}`), false);
});
