// Upstream pinning: the install/verify script and the wrapper's own check
// refuse a binary whose sha256 differs from compatibility.toml, naming the
// file and both hashes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readPin, sha256File, verifyPinned } from '../../wrapper/src/upstream/pin.js';

let dir: string;
let compat: string;
let prefix: string;
const content = { kanidmd: 'server build bytes\n', kanidm: 'cli build bytes\n' };
const sha = (s: string) => 'sha256:' + createHash('sha256').update(s).digest('hex');

function writeCompat(kanidmdSum: string) {
  fs.writeFileSync(
    compat,
    `[upstream]\nname = "kanidm"\nversion = "9.9.9"\n\n[upstream.checksums]\n"bin/kanidmd" = "${kanidmdSum}"\n"bin/kanidm" = "${sha(content.kanidm)}"\n`,
  );
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-pin-'));
  compat = path.join(dir, 'compatibility.toml');
  prefix = path.join(dir, 'prefix');
  fs.mkdirSync(path.join(prefix, 'bin'), { recursive: true });
  for (const [b, c] of Object.entries(content)) fs.writeFileSync(path.join(prefix, 'bin', b), c);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const verifyScript = (p: string) =>
  spawnSync('bash', ['scripts/verify-upstream', p], { encoding: 'utf8', env: { ...process.env, KIWI_COMPATIBILITY_FILE: compat } });

test('verify-upstream accepts binaries that match their pins', () => {
  writeCompat(sha(content.kanidmd));
  const r = verifyScript(prefix);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /upstream kanidm 9\.9\.9 OK/);
});

test('verify-upstream fails on a wrong checksum, naming the file and both hashes', () => {
  const wrong = 'sha256:' + '0'.repeat(64);
  writeCompat(wrong);
  const r = verifyScript(prefix);
  assert.equal(r.status, 1);
  const file = path.join(prefix, 'bin', 'kanidmd');
  assert.ok(r.stderr.includes(`checksum mismatch for ${file}`), r.stderr);
  assert.ok(r.stderr.includes(`expected ${wrong}`), r.stderr);
  assert.ok(r.stderr.includes(`got ${sha(content.kanidmd)}`), r.stderr);
});

test('verify-upstream fails when a pinned binary is missing', () => {
  writeCompat(sha(content.kanidmd));
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(path.join(empty, 'bin'), { recursive: true });
  const r = verifyScript(empty);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bin\/kanidmd is missing/);
});

test('wrapper pin check: match passes, mismatch throws with both hashes', async () => {
  writeCompat(sha(content.kanidmd));
  const bin = path.join(prefix, 'bin', 'kanidmd');
  assert.equal(await verifyPinned(bin, compat), sha(content.kanidmd));
  assert.equal(await sha256File(bin), sha(content.kanidmd));
  assert.equal(readPin(compat).version, '9.9.9');
  fs.appendFileSync(bin, 'tampered');
  await assert.rejects(verifyPinned(bin, compat), (e: Error) => {
    assert.ok(e.message.includes(`expected ${sha(content.kanidmd)}`), e.message);
    assert.ok(e.message.includes('got sha256:'), e.message);
    return true;
  });
});

test('sha256File hashes files that span several reads of its buffer, and empty ones', async () => {
  // 2.5 MiB of varying bytes: more than two reads of the 1 MiB buffer, with a partial last one.
  const big = Buffer.alloc(2.5 * 2 ** 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 12)) & 0xff;
  const bigFile = path.join(dir, 'several-buffers');
  const emptyFile = path.join(dir, 'zero-bytes');
  fs.writeFileSync(bigFile, big);
  fs.writeFileSync(emptyFile, '');
  assert.equal(await sha256File(bigFile), 'sha256:' + createHash('sha256').update(big).digest('hex'));
  assert.equal(await sha256File(emptyFile), sha(''));
  await assert.rejects(sha256File(path.join(dir, 'missing')), { code: 'ENOENT' });
});
