// The CLI as an operator runs it: a separate process, exit codes and stderr.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const cli = path.resolve('wrapper/src/cli/main.ts');
let dir: string;

function kiwi(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cli-'));
  for (const [name, mode] of [['tls.crt', 0o644], ['tls.key', 0o600], ['jwt-private.pem', 0o600], ['jwt-public.pem', 0o644]] as const) {
    fs.writeFileSync(path.join(dir, name), 'x\n');
    fs.chmodSync(path.join(dir, name), mode);
  }
  fs.writeFileSync(
    path.join(dir, 'good.toml'),
    ['listen_addr = "127.0.0.1:9443"', 'tls_cert = "tls.crt"', 'tls_key = "tls.key"', 'jwt_private_key = "jwt-private.pem"', 'jwt_public_key = "jwt-public.pem"', 'upstream_config = "upstream/server.toml"'].join('\n'),
  );
  // Kanidm's CA, where first boot puts it (beside server.toml).
  fs.mkdirSync(path.join(dir, 'upstream/tls'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'upstream/tls/ca.pem'), 'x\n');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('check-config accepts a valid file (via --config and via KIWI_CONFIG)', () => {
  const good = path.join(dir, 'good.toml');
  const r = kiwi(['check-config', '--config', good]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /config OK/);
  assert.equal(kiwi(['check-config'], { KIWI_CONFIG: good }).status, 0);
});

test('check-config refuses bad input with one line naming file and key, exit 2', () => {
  const cases: [string, string][] = [
    ['health_check_interval = "5 seconds"', 'health_check_interval'],
    ['bogus_key = 1', 'bogus_key'],
    ['upstream_addr = "http://127.0.0.1:8443"', 'upstream_addr'],
    ['listen_addr = "no-port"', 'listen_addr'],
  ];
  for (const [line, key] of cases) {
    const file = path.join(dir, `bad-${key}.toml`);
    const base = fs.readFileSync(path.join(dir, 'good.toml'), 'utf8').split('\n').filter((l) => !l.startsWith(`${key} `));
    fs.writeFileSync(file, [...base, line].join('\n'));
    const r = kiwi(['check-config', '-c', file]);
    assert.equal(r.status, 2, `${key}: ${r.stdout}${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0].includes(`${file}: ${key}: `), lines[0]);
  }
});

test('check-config also validates the clients file, naming file, client and key', () => {
  const clients = path.join(dir, 'broken-clients.toml');
  fs.writeFileSync(clients, '[[client]]\nclient_id = "kiwi-mail"\nredirect_uris = ["http://mail.example.com/cb"]\n', { mode: 0o600 });
  const cfg = path.join(dir, 'with-broken-clients.toml');
  fs.writeFileSync(cfg, fs.readFileSync(path.join(dir, 'good.toml'), 'utf8') + `\n[clients]\nfile = "${clients}"\n`);
  const r = kiwi(['check-config', '-c', cfg]);
  assert.equal(r.status, 2, r.stdout);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`${clients}: client\\[kiwi-mail\\]\\.redirect_uris`));
});

test('check-config refuses a world-readable JWT private key', () => {
  const key = path.join(dir, 'jwt-private.pem');
  fs.chmodSync(key, 0o644);
  try {
    const r = kiwi(['check-config', '-c', path.join(dir, 'good.toml')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /jwt_private_key: .*readable by group\/others/);
  } finally {
    fs.chmodSync(key, 0o600);
  }
});

test('run refuses an upstream binary that does not match its pin, naming both hashes', () => {
  const bin = path.join(dir, 'kanidmd');
  fs.writeFileSync(bin, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const compat = path.join(dir, 'compatibility.toml');
  const pinned = 'sha256:' + '0'.repeat(64);
  fs.writeFileSync(compat, ['[upstream]', 'name = "kanidm"', 'version = "1.5.0"', '[upstream.checksums]', `"bin/kanidmd" = "${pinned}"`].join('\n'));
  const file = path.join(dir, 'run.toml');
  fs.writeFileSync(file, fs.readFileSync(path.join(dir, 'good.toml'), 'utf8') + `\nupstream_bin = "kanidmd"\ncompatibility_file = "compatibility.toml"\n`);
  const r = kiwi(['run', '-c', file]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^kiwi-id: cannot start: upstream .*kanidmd does not match its pin: expected sha256:0{64} \(.*compatibility.toml\), got sha256:[0-9a-f]{64}/);
});

test('version prints wrapper and pinned upstream versions as JSON', () => {
  const r = kiwi(['version']);
  assert.equal(r.status, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.equal(v.wrapper, JSON.parse(fs.readFileSync('package.json', 'utf8')).version);
  assert.match(v.upstream, /^kanidm \S+$/);
});

test('kanidm passthrough: arguments, local URL and pinned CA, stdin and exit code go through', () => {
  // A recording script in place of the kanidm binary: what it receives is what kanidm would.
  const cliPath = path.join(dir, 'kanidm-recorder');
  fs.writeFileSync(cliPath, '#!/bin/sh\nprintf "%s|" "$@"; echo "url=$KANIDM_URL ca=$KANIDM_CA_PATH"; read line; echo "stdin=$line"; exit 7\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'upstream-ca.pem'), 'ca\n');
  const file = path.join(dir, 'recorder.toml');
  fs.writeFileSync(file, fs.readFileSync(path.join(dir, 'good.toml'), 'utf8') + `\nupstream_cli = "${cliPath}"\nupstream_ca = "upstream-ca.pem"\nupstream_addr = "https://127.0.0.1:18443"\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, '-c', file, 'kanidm', 'person', 'get', 'alice', '--name', 'idm_admin'], { encoding: 'utf8', input: 'typed-by-operator\n' });
  assert.equal(r.status, 7, r.stderr);
  assert.equal(r.stdout, `person|get|alice|--name|idm_admin|url=https://127.0.0.1:18443 ca=${path.join(dir, 'upstream-ca.pem')}\nstdin=typed-by-operator\n`);
});

test('kanidm passthrough reports a missing upstream CLI clearly (exit 127)', () => {
  const file = path.join(dir, 'nocli.toml');
  fs.writeFileSync(file, fs.readFileSync(path.join(dir, 'good.toml'), 'utf8') + '\nupstream_cli = "/nonexistent/kanidm"\n');
  const r = kiwi(['-c', file, 'kanidm', 'person', 'list']);
  assert.equal(r.status, 127);
  assert.match(r.stderr, /upstream CLI \/nonexistent\/kanidm not found \(upstream_cli in /);
});

test('client add/list through the real CLI: secret shown once, only its hash stored', () => {
  const file = path.join(dir, 'clients.toml');
  const cfg = path.join(dir, 'with-clients.toml');
  fs.writeFileSync(cfg, fs.readFileSync(path.join(dir, 'good.toml'), 'utf8') + `\n[clients]\nfile = "${file}"\n`);
  const add = kiwi(['-c', cfg, 'client', 'add', 'kiwi-mail', '--redirect-uri', 'https://mail.example.com/callback']);
  assert.equal(add.status, 0, add.stderr);
  const secret = /client_secret: (\S+)/.exec(add.stdout)?.[1];
  assert.ok(secret && secret.length >= 40, add.stdout);
  const stored = fs.readFileSync(file, 'utf8');
  assert.ok(!stored.includes(secret), 'plaintext secret must not be stored');
  assert.match(stored, /sha256\$/);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const list = kiwi(['-c', cfg, 'client', 'list']);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /kiwi-mail/);
  assert.ok(!list.stdout.includes('sha256$') && !list.stdout.includes(secret));
});

test('concurrent client commands do not lose each other\'s changes; a stale lock is taken over', async () => {
  const file = path.join(dir, 'concurrent-clients.toml');
  const cfg = path.join(dir, 'concurrent.toml');
  fs.writeFileSync(cfg, fs.readFileSync(path.join(dir, 'good.toml'), 'utf8') + `\n[clients]\nfile = "${file}"\n`);
  const add = (id: string) =>
    new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', cli, '-c', cfg, 'client', 'add', id, '--redirect-uri', `https://${id}.example.com/cb`], { stdio: 'ignore' });
      child.on('exit', resolve);
    });
  const ids = ['svc-a', 'svc-b', 'svc-c', 'svc-d', 'svc-e', 'svc-f'];
  assert.deepEqual(await Promise.all(ids.map(add)), ids.map(() => 0));
  const stored = fs.readFileSync(file, 'utf8');
  for (const id of ids) assert.match(stored, new RegExp(`client_id = "${id}"`));
  assert.equal(fs.existsSync(`${file}.lock`), false, 'lock released');

  // A lock whose owner is gone (crashed mid-command) does not block forever.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  fs.writeFileSync(`${file}.lock`, dead);
  assert.equal(await add('svc-g'), 0);
  assert.match(fs.readFileSync(file, 'utf8'), /client_id = "svc-g"/);
});
