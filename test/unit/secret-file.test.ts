import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSecretFile } from '../../wrapper/src/files/secret-file.js';
import { loadOrCreateCookieKeys } from '../../wrapper/src/oidc/cookie-keys.js';

test('secret files: owner-only is read, group/other-readable is refused naming the file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-secret-'));
  try {
    const f = path.join(dir, 'client.secret');
    fs.writeFileSync(f, 's3cret\n', { mode: 0o600 });
    assert.equal(readSecretFile(f), 's3cret\n');
    fs.chmodSync(f, 0o640);
    assert.throws(() => readSecretFile(f), new RegExp(`^Error: ${f}: secret is readable by group/others \\(mode 0640\\); run chmod 600`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('cookie keys: created once (0600), kept across calls, every line a key', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cookie-'));
  try {
    const f = path.join(dir, 'cookie-keys');
    const first = loadOrCreateCookieKeys(f);
    assert.equal(first.length, 1);
    assert.match(first[0]!, /^[\w-]{43}$/);
    assert.equal(fs.statSync(f).mode & 0o777, 0o600);
    assert.deepEqual(loadOrCreateCookieKeys(f), first);
    fs.writeFileSync(f, `new-key\n${first[0]}\n`); // rotation: prepend
    assert.deepEqual(loadOrCreateCookieKeys(f), ['new-key', first[0]]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
