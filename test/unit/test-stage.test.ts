// scripts/test-stage, the guard every test stage runs under: a hang becomes a
// failure within its bound, and whatever a stage leaves running (also
// processes that lost their parent) is named, ended, and fails the stage.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { processesWith } from '../component/harness/processes.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-test-stage-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const stage = (args: string[], cmd: string) =>
  spawnSync('python3', ['scripts/test-stage', '--name', 'demo', ...args, '--', 'bash', '-c', cmd], { encoding: 'utf8', timeout: 120_000 });

test('passes the stage\'s exit code through when nothing is left', () => {
  assert.equal(stage(['--timeout', '60'], 'exit 0').status, 0);
  assert.equal(stage(['--timeout', '60'], 'exit 3').status, 3);
});

test('a process left running (even one that lost its parent) fails the stage, is named and ended', () => {
  const mark = `kiwi-leftover-${randomBytes(4).toString('hex')}`;
  // exec -a gives the sleeper a name to find; the subshell exits at once, so
  // the sleeper is an orphan, as a wrapper's child is after a SIGKILL.
  const r = stage(['--timeout', '60'], `(exec -a ${mark} sleep 600 &) ; exit 0`);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`processes left running by the tests:\\n.*pid \\d+: ${mark} 600`));
  assert.deepEqual(processesWith(mark), [], 'it was ended');
});

test('a hang is stopped after the bound: exit 124, nothing left', () => {
  const mark = `kiwi-hang-${randomBytes(4).toString('hex')}`;
  const r = stage(['--timeout', '2'], `exec -a ${mark} sleep 600`);
  assert.equal(r.status, 124, r.stderr);
  assert.match(r.stderr, /still running after 2 s: a hang/);
  assert.deepEqual(processesWith(mark), []);
});

test('kiwi-* temp dirs left in the run\'s temp dir fail the stage and are removed', () => {
  const tmp = fs.mkdtempSync(path.join(dir, 'run-'));
  const r = stage(['--timeout', '60', '--tmp', tmp], `mkdir "${tmp}/kiwi-forgotten" "${tmp}/tsx-cache"`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /temp dirs\/files left by the tests in .*: kiwi-forgotten$/m);
  assert.deepEqual(fs.readdirSync(tmp), ['tsx-cache'], 'only kiwi-* entries count');
});
