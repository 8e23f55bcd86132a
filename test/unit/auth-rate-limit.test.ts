import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthRateLimit, isCredentialStep } from '../../wrapper/src/server/auth-rate-limit.js';

test('N attempts per address in any rolling window; the next waits until the oldest leaves the window', (t) => {
  let now = 1_000_000;
  const limit = new AuthRateLimit({ limit: 3, windowMs: 300_000, now: () => now });
  t.after(() => limit.close());
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
  const limit = new AuthRateLimit({ limit: 1, windowMs: 60_000, now: () => now });
  const off = new AuthRateLimit({ limit: 0 });
  t.after(() => (limit.close(), off.close()));
  assert.equal(limit.take('a'), 0);
  for (let i = 0; i < 10; i++) {
    now += 1_000;
    assert.ok(limit.take('a') > 0);
  }
  now = 60_000;
  assert.equal(limit.take('a'), 0);
  for (let i = 0; i < 100; i++) assert.equal(off.take('a'), 0);
});

test('only credential submissions count', () => {
  for (const p of ['/ui/login/begin', '/ui/login/pw', '/ui/login/totp', '/ui/login/passkey', '/ui/login/seckey', '/ui/login/backup_code', '/v1/auth']) {
    assert.equal(isCredentialStep('POST', p), true, p);
    assert.equal(isCredentialStep('GET', p), false, p);
  }
  for (const p of ['/ui/login', '/ui/login/mech_choose', '/v1/auth/valid', '/oauth2/token', '/status']) assert.equal(isCredentialStep('POST', p), false, p);
});
