import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installUpstream, UpstreamRefused, verifyUpstreamDir } from '../../wrapper/src/upstream/install.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-upstream-install-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const sum = (s: string) => 'sha256:' + createHash('sha256').update(s).digest('hex');

function setup(name: string, files: Record<string, string>) {
  const dir = path.join(root, name);
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content, { mode: 0o755 });
  }
  return dir;
}

const compat = path.join(root, 'compatibility.toml');
fs.writeFileSync(compat, `[upstream]\nname = "kanidm"\nversion = "t"\n[upstream.checksums]\n"bin/kanidmd" = "${sum('daemon')}"\n"bin/kanidm" = "${sum('cli')}"\n`);

test('a directory whose binaries all match the pins verifies', async () => {
  const dir = setup('good', { 'bin/kanidmd': 'daemon', 'bin/kanidm': 'cli' });
  assert.deepEqual((await verifyUpstreamDir(dir, compat)).map((c) => c.rel), ['bin/kanidm', 'bin/kanidmd']);
});

test('a mismatch and a missing binary are both named, with file and hashes; nothing is installed', async () => {
  const dir = setup('bad', { 'bin/kanidmd': 'daemon, another build' });
  const installed = setup('installed', { 'bin/kanidmd': 'daemon', 'bin/kanidm': 'cli' });
  const targets = { 'bin/kanidmd': path.join(installed, 'bin/kanidmd'), 'bin/kanidm': path.join(installed, 'bin/kanidm') };
  await assert.rejects(installUpstream(dir, { targets, compatibilityFile: compat }), (err: Error) => {
    assert.ok(err instanceof UpstreamRefused);
    assert.match(err.message, new RegExp(`${dir}/bin/kanidm is missing \\(pinned in ${compat}\\)`));
    assert.ok(err.message.includes(`${dir}/bin/kanidmd does not match the pin of this Kiwi ID: expected ${sum('daemon')} (${compat}), got ${sum('daemon, another build')}`));
    return true;
  });
  assert.equal(fs.readFileSync(targets['bin/kanidmd'], 'utf8'), 'daemon');
  assert.deepEqual(fs.readdirSync(path.join(installed, 'bin')).sort(), ['kanidm', 'kanidmd'], 'no temp file left');
});

test('matching binaries replace the installed ones by rename (a running process keeps its file); identical ones are left alone', async () => {
  const installed = setup('old', { 'bin/kanidmd': 'tampered', 'bin/kanidm': 'cli' });
  const targets = { 'bin/kanidmd': path.join(installed, 'bin/kanidmd'), 'bin/kanidm': path.join(installed, 'bin/kanidm') };
  const fd = fs.openSync(targets['bin/kanidmd'], 'r'); // what a running kanidmd holds
  try {
    const written = await installUpstream(setup('new', { 'bin/kanidmd': 'daemon', 'bin/kanidm': 'cli' }), { targets, compatibilityFile: compat });
    assert.deepEqual(written, [targets['bin/kanidmd']]);
    assert.equal(fs.readFileSync(targets['bin/kanidmd'], 'utf8'), 'daemon');
    assert.equal(fs.statSync(targets['bin/kanidmd']).mode & 0o777, 0o755);
    assert.equal(fs.readFileSync(fd, 'utf8'), 'tampered', 'the old file is still whole for whoever has it open');
  } finally {
    fs.closeSync(fd);
  }
});
