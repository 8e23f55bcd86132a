// The issuer's optional-surface keys: [clients] registration_token(_file),
// [tokens] device_code_ttl, [backchannel_logout].
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../wrapper/src/config/config.js';
import { registrationToken } from '../../wrapper/src/config/issuer.js';

let dir: string;
const TOKEN = 'x'.repeat(40);

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-config-issuer-'));
  for (const [name, mode] of [['tls.crt', 0o644], ['tls.key', 0o600], ['jwt-private.pem', 0o600], ['jwt-public.pem', 0o644], ['services-ca.pem', 0o644]] as const) {
    fs.writeFileSync(path.join(dir, name), 'not really PEM\n');
    fs.chmodSync(path.join(dir, name), mode);
  }
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function config(extra: string, mode = 0o600): string {
  const file = path.join(dir, `config-${n++}.toml`);
  fs.writeFileSync(file, ['listen_addr = "0.0.0.0:8080"', 'tls_cert = "tls.crt"', 'tls_key = "tls.key"', 'jwt_private_key = "jwt-private.pem"', 'jwt_public_key = "jwt-public.pem"', 'upstream_ca = "services-ca.pem"', extra].join('\n'));
  fs.chmodSync(file, mode);
  return file;
}

function rejected(file: string, key: string, detail: RegExp): void {
  assert.throws(() => loadConfig(file), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.key, key);
    assert.ok(e.message.startsWith(`${file}: ${key}: `), e.message);
    assert.match(e.message, detail);
    return true;
  });
}

test('registration token inline (config file not world-readable) or in a 0600 file', () => {
  const inline = loadConfig(config(`[clients]\nregistration_token = "${TOKEN}"`));
  assert.equal(registrationToken(inline.clients), TOKEN);

  const tokenFile = path.join(dir, 'registration.token');
  fs.writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  const fromFile = loadConfig(config('[clients]\nregistration_token_file = "registration.token"'));
  assert.equal(fromFile.clients.registration_token_file, tokenFile);
  assert.equal(registrationToken(fromFile.clients), TOKEN);

  assert.equal(registrationToken(loadConfig(config('')).clients), undefined, 'absent = registration off');
});

test('registration token problems name the key', () => {
  rejected(config('[clients]\nregistration_token = "short"'), '[clients].registration_token', /at least 32 characters/);
  rejected(config(`[clients]\nregistration_token = "${TOKEN}"`, 0o644), '[clients].registration_token', /readable by others.*registration_token_file/);
  rejected(config(`[clients]\nregistration_token = "${TOKEN}"\nregistration_token_file = "t"`), '[clients].registration_token_file', /not both/);
  const open = path.join(dir, 'open.token');
  fs.writeFileSync(open, TOKEN);
  fs.chmodSync(open, 0o644);
  rejected(config('[clients]\nregistration_token_file = "open.token"'), '[clients].registration_token_file', /readable by group\/others/);
  rejected(config('[clients]\nregistration_token_file = "missing.token"'), '[clients].registration_token_file', /ENOENT|no such file/);
  rejected(config('[clients]\nregistration_token = 5'), '[clients].registration_token', /expected a string, got integer/);
});

test('[tokens] device_code_ttl', () => {
  assert.equal(loadConfig(config('')).tokens.device_code_ttl, 600);
  assert.equal(loadConfig(config('[tokens]\ndevice_code_ttl = 300')).tokens.device_code_ttl, 300);
  rejected(config('[tokens]\ndevice_code_ttl = 0'), '[tokens].device_code_ttl', /positive integer/);
});

test('[backchannel_logout]: defaults, values, problems', () => {
  assert.deepEqual(loadConfig(config('')).backchannel_logout, { ca_file: undefined, timeout_ms: 5000, max_attempts: 6 });
  assert.deepEqual(loadConfig(config('[backchannel_logout]\nca_file = "services-ca.pem"\ntimeout = "2s"\nmax_attempts = 3')).backchannel_logout, {
    ca_file: path.join(dir, 'services-ca.pem'),
    timeout_ms: 2000,
    max_attempts: 3,
  });
  rejected(config('[backchannel_logout]\nretries = 3'), '[backchannel_logout].retries', /unknown key/);
  rejected(config('[backchannel_logout]\nca_file = "nope.pem"'), '[backchannel_logout].ca_file', /does not exist/);
  rejected(config('[backchannel_logout]\ntimeout = "soon"'), '[backchannel_logout].timeout', /not a duration/);
  rejected(config('[backchannel_logout]\nmax_attempts = 0'), '[backchannel_logout].max_attempts', /1 to 20/);
  rejected(config('backchannel_logout = 1'), 'backchannel_logout', /expected a table/);
});
