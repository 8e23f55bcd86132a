// The real, pinned Kanidm under Kiwi ID, from nothing: first boot, run,
// administration through `kiwi-id kanidm`, data surviving a kill -9 of
// kanidmd and a wrapper restart; and the pins refusing what was not built
// from the pinned source.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { HttpBrowser } from './harness/http-browser.js';
import { KiwiNode, REPO, UPSTREAM_PREFIX } from './harness/kiwi-node.js';

const node = new KiwiNode({ name: 'upstream' });
before(async () => {
  await node.init();
  await node.start();
});
after(() => node.close());

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('first boot wrote a version 2 server.toml bound to the public issuer, loopback TLS from its own CA, root-only admin passwords', () => {
  const toml = fs.readFileSync(node.upstreamConfig, 'utf8');
  assert.match(toml, /^version = "2"$/m);
  assert.match(toml, new RegExp(`^bindaddress = "127.0.0.1:${node.upstreamPort}"$`, 'm'));
  assert.match(toml, /^domain = "localhost"$/m);
  assert.match(toml, new RegExp(`^origin = "${node.base}"$`, 'm'));
  assert.match(toml, /^x-forward-for = \["127.0.0.1"\]$/m);
  assert.equal(fs.statSync(path.join(node.root, 'upstream/etc/tls/key.pem')).mode & 0o777, 0o400);
  for (const f of ['idm_admin.password', 'admin.password', 'data/upstream-oauth2.secret', 'private/jwt-private.pem']) {
    const mode = fs.statSync(path.join(node.root, f)).mode & 0o777;
    assert.equal(mode, 0o600, `${f} is ${mode.toString(8)}`);
  }
});

test('/readyz is 200 with Kanidm up, and Kanidm answers through the front door', async () => {
  assert.equal((await node.get('/readyz')).status, 200);
  const status = await node.get('/status');
  assert.equal(status.status, 200);
  assert.equal(status.text.trim(), 'true');
});

test('Kiwi ID is registered at Kanidm as an OAuth2 client (no manual step): sign-in goes to Kanidm on the same origin', async () => {
  await node.loginIdmAdmin();
  const got = await node.kanidm(['system', 'oauth2', 'get', 'kiwi-id']);
  assert.equal(got.exitCode, 0, got.stderr);
  assert.ok(got.stdout.includes(`${node.base}/oauth2/login/callback`), got.stdout);
  assert.match(got.stdout, /idm_all_persons/);
  // A service's authorization request ends at Kanidm's own login page, through the wrapper.
  const secret = await node.kiwi(['client', 'add', 'svc-ready', '--redirect-uri', 'https://svc.example.test/cb', '--public']);
  assert.equal(secret.exitCode, 0, secret.stderr);
  const q = new URLSearchParams({
    client_id: 'svc-ready', response_type: 'code', scope: 'openid', redirect_uri: 'https://svc.example.test/cb',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: 'st', nonce: 'n',
  });
  const browser = new HttpBrowser(node.dispatcher!, [node.base]);
  const authz = await browser.go(`${node.base}/oauth2/authorize?${q}`);
  // The walk stops where the browser would leave the issuer's paths: at Kanidm (same origin).
  const toKanidm = browser.visited.map((u) => u).find((u) => u.pathname === '/ui/oauth2') ?? authz.url;
  assert.equal(toKanidm.origin, node.base);
  assert.equal(toKanidm.pathname, '/ui/oauth2');
  assert.equal(toKanidm.searchParams.get('client_id'), 'kiwi-id');
  assert.equal(toKanidm.searchParams.get('code_challenge_method'), 'S256');
  // Not signed in at Kanidm yet: its own login page, served through the wrapper.
  assert.equal(authz.status, 200);
  assert.match(authz.text, /<form/i);
  assert.match(authz.text, /name="username"/);
});
test('kiwi-id kanidm creates a person and a group; both survive kill -9 of kanidmd and a wrapper restart', async () => {
  await node.loginIdmAdmin();
  for (const args of [
    ['person', 'create', 'alice', 'Alice Example'],
    ['group', 'create', 'mail_users'],
    ['group', 'add-members', 'mail_users', 'alice'],
  ]) {
    const r = await node.kanidm(args);
    assert.equal(r.exitCode, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const present = async () => {
    const p = await node.kanidm(['person', 'get', 'alice']);
    const g = await node.kanidm(['group', 'list-members', 'mail_users']);
    return p.exitCode === 0 && p.stdout.includes('Alice Example') && g.stdout.includes('alice');
  };
  assert.ok(await present());

  const before = node.kanidmdPid()!;
  process.kill(before, 'SIGKILL');
  await node.until('a new kanidmd', async () => (node.kanidmdPid() ?? before) !== before);
  await node.until('readiness after the kill', async () => (await node.get('/readyz')).status === 200);
  assert.ok(await present(), 'person and group survive kill -9 of kanidmd');

  assert.equal(await node.stop(), 0);
  assert.equal(fs.existsSync(`/proc/${node.kanidmdPid()}`), false, 'kanidmd stopped with the wrapper');
  await node.start();
  await node.loginIdmAdmin();
  assert.ok(await present(), 'person and group survive a wrapper restart');
  // First boot reindexed the new database (Kanidm 1.11.1 leaves it partly unindexed otherwise).
  assert.deepEqual(node.lines().filter((l) => /YOU MUST REINDEX/.test(l.upstream_line ?? '')), []);
});

test('a second first boot changes nothing', async () => {
  const keyBefore = sha256(path.join(node.root, 'private/jwt-private.pem'));
  const secretBefore = sha256(path.join(node.root, 'data/upstream-oauth2.secret'));
  const r = await node.kiwi(['init']);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /^created/m, r.stdout);
  assert.equal(sha256(path.join(node.root, 'private/jwt-private.pem')), keyBefore);
  assert.equal(sha256(path.join(node.root, 'data/upstream-oauth2.secret')), secretBefore);
});

test('the wrapper refuses to start a kanidmd that does not match its pin', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-it-unpinned-'));
  try {
    const bin = path.join(dir, 'kanidmd');
    fs.copyFileSync(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'), bin);
    fs.appendFileSync(bin, Buffer.from([0])); // one byte more: another binary
    const config = path.join(dir, 'config.toml');
    fs.writeFileSync(config, fs.readFileSync(node.config, 'utf8').replace(/^upstream_bin = .*$/m, `upstream_bin = ${JSON.stringify(bin)}`)
      .replace(/^(tls_cert|tls_key|jwt_private_key|jwt_public_key|upstream_config|upstream_db_path|data_dir|log_dir) = "(.*)"$/gm, (_m, k, v) => `${k} = ${JSON.stringify(path.join(node.root, v))}`)
      .replace(/^listen_addr = .*$/m, 'listen_addr = "127.0.0.1:1"'));
    const r = await execa(process.execPath, [path.join(REPO, 'wrapper/bin/kiwi-id.js'), '-c', config, 'run'], { reject: false, timeout: 60_000 });
    assert.equal(r.exitCode, 1);
    const want = 'sha256:' + sha256(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'));
    const got = 'sha256:' + sha256(bin);
    assert.match(r.stderr, new RegExp(`${bin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not match its pin: expected ${want} .* got ${got}`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('scripts/verify-upstream names the file and both hashes for a wrong binary', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-it-verify-'));
  try {
    fs.mkdirSync(path.join(dir, 'bin'));
    fs.copyFileSync(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'), path.join(dir, 'bin/kanidmd'));
    fs.writeFileSync(path.join(dir, 'bin/kanidm'), 'not the pinned CLI');
    const r = await execa('bash', [path.join(REPO, 'scripts/verify-upstream'), dir], { reject: false });
    assert.equal(r.exitCode, 1);
    const got = 'sha256:' + sha256(path.join(dir, 'bin/kanidm'));
    assert.match(r.stderr, new RegExp(`checksum mismatch for ${dir}/bin/kanidm: expected sha256:[0-9a-f]{64} \\(compatibility.toml\\), got ${got}`));
    assert.match(r.stdout, /verified .*bin\/kanidmd sha256:/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('scripts/install-upstream refuses a source archive whose checksum differs, naming the file and both hashes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-it-source-'));
  try {
    const fake = path.join(dir, 'kanidm-1.11.1.tar.gz');
    await execa('bash', ['-c', `mkdir -p ${dir}/kanidm-1.11.1 && echo tampered > ${dir}/kanidm-1.11.1/README.md && tar -C ${dir} -czf ${fake} kanidm-1.11.1`]);
    const got = (await execa('bash', ['-c', `gzip -dc ${fake} | sha256sum | cut -d' ' -f1`])).stdout.trim();
    const r = await execa('bash', [path.join(REPO, 'scripts/install-upstream'), '--no-apt', '--prefix', path.join(dir, 'prefix'), '--source', fake], {
      reject: false,
      env: { KIWI_CACHE_DIR: path.join(dir, 'cache') },
    });
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`source archive ${fake}: sha256 of the uncompressed tar is ${got}, expected [0-9a-f]{64} \\(upstream.source_sha256 in .*\\)`));
    assert.equal(fs.existsSync(path.join(dir, 'prefix/bin/kanidmd')), false, 'nothing installed');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
