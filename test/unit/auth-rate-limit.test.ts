import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuthRateLimit, isCredentialStep } from '../../wrapper/src/server/auth-rate-limit.js';
import { SqliteAttemptLog, SIGN_IN_ATTEMPTS_FILE } from '../../wrapper/src/state/sign-in-attempts.js';

/** A data dir of the test's own, removed afterwards. */
function dataDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-attempts-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function limiter(t: TestContext, dir: string, o: { limit: number; windowMs?: number; now?: () => number }): AuthRateLimit {
  const l = new AuthRateLimit({ ...o, attempts: new SqliteAttemptLog({ dataDir: dir }) });
  t.after(() => l.close());
  return l;
}

test('N attempts per address in any rolling window; the next waits until the oldest leaves the window', (t) => {
  let now = 1_000_000;
  const limit = limiter(t, dataDir(t), { limit: 3, windowMs: 300_000, now: () => now });
  for (let i = 0; i < 3; i++) {
    assert.equal(limit.take('192.0.2.1'), 0);
    now += 10_000;
  }
  assert.equal(limit.take('192.0.2.1'), 270, 'refused: the first attempt leaves the window in 270 s');
  assert.equal(limit.take('192.0.2.2'), 0, 'another address has its own budget');
  now += 270_000;
  assert.equal(limit.take('192.0.2.1'), 0, 'one slot free again');
  assert.ok(limit.take('192.0.2.1') > 0);
});

test('refused attempts do not extend the wait; limit 0 is off', (t) => {
  let now = 0;
  const dir = dataDir(t);
  const limit = limiter(t, dir, { limit: 1, windowMs: 60_000, now: () => now });
  const off = limiter(t, dataDir(t), { limit: 0 });
  assert.equal(limit.take('a'), 0);
  for (let i = 0; i < 10; i++) {
    now += 1_000;
    assert.ok(limit.take('a') > 0);
  }
  now = 60_000;
  assert.equal(limit.take('a'), 0);
  for (let i = 0; i < 100; i++) assert.equal(off.take('a'), 0);
});

test('worker processes share one budget per address, and a restart does not reset it', (t) => {
  let now = 5_000_000;
  const dir = dataDir(t);
  // Two limiters on one data dir: two connections to the file, as two worker processes have.
  const a = limiter(t, dir, { limit: 4, windowMs: 300_000, now: () => now });
  const b = limiter(t, dir, { limit: 4, windowMs: 300_000, now: () => now });
  assert.equal(a.take('198.51.100.7'), 0);
  assert.equal(b.take('198.51.100.7'), 0);
  assert.equal(a.take('198.51.100.7'), 0);
  assert.equal(b.take('198.51.100.7'), 0);
  assert.ok(a.take('198.51.100.7') > 0, 'the fifth attempt is refused whichever worker sees it');
  assert.ok(b.take('198.51.100.7') > 0);
  a.close();
  b.close();
  const restarted = limiter(t, dir, { limit: 4, windowMs: 300_000, now: () => now });
  assert.ok(restarted.take('198.51.100.7') > 0, 'still refused after a restart');
  now += 300_000;
  assert.equal(restarted.take('198.51.100.7'), 0, 'free once the window has passed');
  assert.equal(fs.statSync(path.join(dir, SIGN_IN_ATTEMPTS_FILE)).mode & 0o777, 0o600, 'addresses are kept from other users');
});

test('the sweep forgets attempts older than the window', (t) => {
  const log = new SqliteAttemptLog({ dataDir: dataDir(t) });
  t.after(() => log.close());
  assert.equal(log.take('a', 1_000, 500, 1), null);
  assert.equal(log.take('a', 1_200, 500, 1), 1_000, 'refused: the attempt at 1000 still counts');
  log.sweep(1_000);
  assert.equal(log.take('a', 1_200, 500, 1), null, 'swept, so counted afresh');
});

test('only credential submissions count', () => {
  for (const p of ['/ui/login/begin', '/ui/login/pw', '/ui/login/totp', '/ui/login/passkey', '/ui/login/seckey', '/ui/login/backup_code', '/v1/auth']) {
    assert.equal(isCredentialStep('POST', p), true, p);
    assert.equal(isCredentialStep('GET', p), false, p);
  }
  for (const p of ['/ui/login', '/ui/login/mech_choose', '/v1/auth/valid', '/oauth2/token', '/status']) assert.equal(isCredentialStep('POST', p), false, p);
});
