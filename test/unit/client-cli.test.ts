// `kiwi-id client ...` driven in-process (harness/client-cli.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runClientCli } from './harness/client-cli.js';
import { verifySecret } from '../../wrapper/src/clients/client-secret.js';
import { loadClients } from '../../wrapper/src/clients/clients-file.js';

let dir: string;
let file: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-client-cli-'));
  file = path.join(dir, 'clients.toml');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) => runClientCli(file, ...args);

function secretFrom(stdout: string): string {
  const m = /^client_secret: (\S+)$/m.exec(stdout);
  assert.ok(m, `no secret in:\n${stdout}`);
  return m[1]!;
}

test('add prints a secret once that verifies against the stored hash', async () => {
  const r = await run('add', 'kiwi-mail', '--redirect-uri', 'https://mail.example.com/cb', 'http://localhost:8080/cb', '--name', 'Kiwi Mail', '--allowed-group', 'mail-users');
  assert.equal(r.code, 0, r.stderr);
  const secret = secretFrom(r.stdout);
  assert.match(r.stdout, /cannot be shown again/);
  assert.equal(r.stdout.split(secret).length, 2, 'secret printed exactly once');
  const [c] = loadClients(file);
  assert.ok(c);
  assert.equal(c.client_name, 'Kiwi Mail');
  assert.deepEqual(c.redirect_uris, ['https://mail.example.com/cb', 'http://localhost:8080/cb']);
  assert.deepEqual(c.allowed_groups, ['mail-users']);
  assert.ok(verifySecret(secret, c.client_secret_hash!));
  assert.ok(!fs.readFileSync(file, 'utf8').includes(secret));
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
});

test('add --public stores no secret and prints none', async () => {
  const r = await run('add', 'kiwi-spa', '--public', '--redirect-uri', 'https://spa.example.com/cb', '--post-logout-redirect-uri', 'https://spa.example.com/');
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /client_secret:/);
  const c = loadClients(file).find((x) => x.client_id === 'kiwi-spa')!;
  assert.equal(c.token_endpoint_auth_method, 'none');
  assert.equal(c.client_secret_hash, undefined);
  assert.deepEqual(c.post_logout_redirect_uris, ['https://spa.example.com/']);
});

test('list and show never print hashes', async () => {
  const l = await run('list');
  assert.equal(l.code, 0, l.stderr);
  assert.ok(!l.stdout.includes('sha256$'), l.stdout);
  assert.match(l.stdout, /kiwi-mail\s+Kiwi Mail\s+client_secret_basic\s+https:\/\/mail\.example\.com\/cb/);
  assert.match(l.stdout, /kiwi-spa\s+-\s+none\s+https:\/\/spa\.example\.com\/cb/);

  const s = await run('show', 'kiwi-mail');
  assert.equal(s.code, 0, s.stderr);
  assert.ok(!s.stdout.includes('sha256$'));
  const shown = JSON.parse(s.stdout);
  assert.equal(shown.client_id, 'kiwi-mail');
  assert.equal(shown.has_secret, true);
  assert.equal('client_secret_hash' in shown, false);
  assert.equal(JSON.parse((await run('show', 'kiwi-spa')).stdout).has_secret, false);
});

test('rotate-secret prints a new secret; the old one stops working', async () => {
  const oldHash = loadClients(file).find((c) => c.client_id === 'kiwi-mail')!.client_secret_hash!;
  const r = await run('rotate-secret', 'kiwi-mail');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /cannot be shown again/);
  const secret = secretFrom(r.stdout);
  const newHash = loadClients(file).find((c) => c.client_id === 'kiwi-mail')!.client_secret_hash!;
  assert.notEqual(newHash, oldHash);
  assert.ok(verifySecret(secret, newHash));
  assert.ok(!verifySecret(secret, oldHash));

  const pub = await run('rotate-secret', 'kiwi-spa');
  assert.equal(pub.code, 2);
  assert.match(pub.stderr, /no secret to rotate/);
});

test('update changes redirect URIs and allowed groups; the secret keeps working', async () => {
  const added = await run('add', 'kiwi-wiki', '--redirect-uri', 'https://wiki.example.com/cb');
  const secret = secretFrom(added.stdout);
  const r = await run('update', 'kiwi-wiki', '--allowed-group', 'wiki_editors', 'staff', '--redirect-uri', 'https://wiki.example.com/oidc/cb');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /updated client kiwi-wiki/);
  assert.doesNotMatch(r.stdout, /sha256\$/);
  let c = loadClients(file).find((x) => x.client_id === 'kiwi-wiki')!;
  assert.deepEqual(c.allowed_groups, ['wiki_editors', 'staff']);
  assert.deepEqual(c.redirect_uris, ['https://wiki.example.com/oidc/cb']);
  assert.ok(verifySecret(secret, c.client_secret_hash!), 'secret unchanged');
  assert.equal((await run('update', 'kiwi-wiki', '--clear-allowed-groups')).code, 0);
  c = loadClients(file).find((x) => x.client_id === 'kiwi-wiki')!;
  assert.equal(c.allowed_groups, undefined);
  // Bad input changes nothing.
  const before = fs.readFileSync(file, 'utf8');
  const bad = await run('update', 'kiwi-wiki', '--redirect-uri', 'http://wiki.example.com/cb');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /redirect_uris/);
  assert.equal((await run('update', 'kiwi-wiki')).code, 2, 'nothing to change');
  assert.equal((await run('update', 'no-such-client', '--name', 'x')).code, 1);
  assert.equal(fs.readFileSync(file, 'utf8'), before);
  assert.equal((await run('remove', 'kiwi-wiki')).code, 0);
});

test('errors: one line on stderr; unknown id exits 1, bad input exits 2', async () => {
  const before = fs.readFileSync(file, 'utf8');
  const cases: [args: string[], code: number, stderr: RegExp][] = [
    [['remove', 'nope'], 1, /no client with client_id "nope"/],
    [['show', 'nope'], 1, /no client with client_id "nope"/],
    [['rotate-secret', 'nope'], 1, /no client with client_id "nope"/],
    [['add', 'kiwi-mail', '--redirect-uri', 'https://x.example.com/cb'], 2, /client\[kiwi-mail\]\.client_id: .*already exists/],
    [['add', 'kiwi-x', '--redirect-uri', 'http://x.example.com/cb'], 2, /client\[kiwi-x\]\.redirect_uris: .*https/],
    [['add', 'kiwi-x', '--redirect-uri', 'https://x.example.com/cb#f'], 2, /fragment/],
    [['add', 'Bad Id', '--redirect-uri', 'https://x.example.com/cb'], 2, /client_id: .*must match/],
    [['add', 'kiwi-x'], 2, /redirect_uris: at least one/],
    [['add', 'kiwi-x', '--redirect-uri', 'https://x.example.com/cb', '--grant', 'implicit'], 2, /implicit/],
    [['add', 'kiwi-x', '--bogus'], 2, /unknown option/],
    [['remove'], 2, /missing required argument/],
  ];
  for (const [args, code, stderr] of cases) {
    const r = await run(...args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, stderr);
  }
  assert.equal(fs.readFileSync(file, 'utf8'), before, 'failed commands do not touch the file');
});

test('a broken clients file is reported with file, client and key (exit 2)', async () => {
  const saved = file;
  file = path.join(dir, 'broken.toml');
  try {
    fs.writeFileSync(file, '[[client]]\nclient_id = "kiwi-x"\nredirect_uris = ["https://x.example.com/cb"]\ntoken_endpoint_auth_method = "none"\nextra = 1\n');
    const r = await run('list');
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), `kiwi-id: ${file}: client[kiwi-x].extra: unknown key`);
  } finally {
    file = saved;
  }
});

test('remove deletes the client; list of an empty file says so', async () => {
  assert.equal((await run('remove', 'kiwi-mail')).code, 0);
  assert.equal((await run('remove', 'kiwi-spa')).code, 0);
  assert.deepEqual(loadClients(file), []);
  const l = await run('list');
  assert.match(l.stdout, /no clients registered/);
});
