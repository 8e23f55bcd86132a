// `kiwi-id init` as the appliance's first boot runs it: a separate process.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadSigningKey } from '../../wrapper/src/crypto/keys.js';
import { loadConfig } from '../../wrapper/src/config/config.js';

const cli = path.resolve('wrapper/src/cli/main.ts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-init-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const kiwi = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });
const mode = (f: string) => fs.statSync(f).mode & 0o777;
const digest = (dir: string) => {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else h.update(p).update(fs.readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
};

test('init --dev creates a valid config, 0600 keys and certs, then stops clearly at the missing upstream', async () => {
  const dir = path.join(root, 'dev');
  const r = kiwi(['init', '--dev', dir]);
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stdout, /^created +jwt signing key pair: /m);
  assert.match(r.stdout, /^created +wrapper TLS certificate: /m);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /upstream not installed: .*kanidmd \(upstream_bin in .*config\.toml\); install it with scripts\/install-upstream/);

  const cfg = loadConfig(path.join(dir, 'config.toml')); // with file checks: everything named exists and is safe
  assert.equal(mode(cfg.jwt_private_key), 0o600);
  assert.equal(mode(cfg.tls_key), 0o600);
  assert.equal(mode(path.join(cfg.data_dir, 'cookie-keys')), 0o600);
  const key = await loadSigningKey(cfg.jwt_private_key, cfg.jwt_public_key);
  assert.equal(key.alg, 'ES256');
  const cert = new (await import('node:crypto')).X509Certificate(fs.readFileSync(cfg.tls_cert));
  assert.match(String(cert.subjectAltName), /DNS:localhost/);
  assert.equal(kiwi(['check-config', '-c', path.join(dir, 'config.toml')]).status, 0);
});

test('init is idempotent: a second run keeps every file byte for byte', () => {
  const dir = path.join(root, 'dev');
  const before = digest(dir);
  const r = kiwi(['init', '--dev', dir]);
  assert.equal(r.status, 3);
  assert.doesNotMatch(r.stdout, /^created/m);
  assert.match(r.stdout, /^kept +jwt signing key pair/m);
  assert.equal(digest(dir), before);
});

test('init refuses a half-present key pair instead of replacing it', () => {
  const dir = path.join(root, 'half');
  assert.equal(kiwi(['init', '--dev', dir]).status, 3);
  fs.rmSync(path.join(dir, 'jwt-public.pem'));
  const r = kiwi(['init', '--dev', dir]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /jwt-public\.pem/);
  assert.equal(fs.existsSync(path.join(dir, 'private/jwt-private.pem')), true, 'private key kept');
});
