// `kiwi-id run` as a process: config → pin check → supervised child → front
// door + issuer → signals. The supervised child is the scripted process of the
// supervisor tests (fixtures/status-server.mjs, pinned by its own checksum);
// nothing here claims Kanidm behaviour — that is test/integration's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { generateSigningKeyPair } from '../../wrapper/src/keys.js';
import { generateDevCertificate } from '../../wrapper/src/tls-certs.js';
import { freePort } from '../e2e/net.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-run-'));
const out: string[] = [];
let wrapper: ChildProcess;
let base: string;
let dispatcher: Agent;

const lines = () => out.join('').split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return { raw: l }; } });
async function get(p: string) {
  const res = await request(base + p, { dispatcher });
  return { status: res.statusCode, text: await res.body.text() };
}
async function until(what: string, ok: () => Promise<boolean>, ms = 15_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}\n${out.join('').slice(-2000)}`);
}

before(async () => {
  const cert = (name: string) => {
    const o = { certPath: path.join(root, `${name}.crt`), keyPath: path.join(root, `${name}.key`), caPath: path.join(root, `${name}-ca.crt`), hostnames: ['localhost'], ips: ['127.0.0.1'], days: 1 };
    generateDevCertificate(o);
    return o;
  };
  const listener = cert('wrapper');
  const upstream = cert('upstream');
  await generateSigningKeyPair(path.join(root, 'jwt-private.pem'), path.join(root, 'jwt-public.pem'));
  const bin = path.join(root, 'bin/kanidmd');
  fs.mkdirSync(path.dirname(bin));
  fs.copyFileSync('test/component/fixtures/status-server.mjs', bin);
  fs.chmodSync(bin, 0o755);
  const sum = 'sha256:' + createHash('sha256').update(fs.readFileSync(bin)).digest('hex');
  fs.writeFileSync(path.join(root, 'compatibility.toml'), `[upstream]\nname = "kanidm"\nversion = "test"\n[upstream.checksums]\n"bin/kanidmd" = "${sum}"\n`);
  const upstreamPort = await freePort();
  fs.writeFileSync(path.join(root, 'upstream.json'), JSON.stringify({ port: upstreamPort, cert: upstream.certPath, key: upstream.keyPath, mode: 'ok' }));
  const port = await freePort();
  fs.writeFileSync(
    path.join(root, 'config.toml'),
    [
      `listen_addr = "127.0.0.1:${port}"`,
      `issuer = "https://localhost:${port}"`,
      'tls_cert = "wrapper.crt"',
      'tls_key = "wrapper.key"',
      `upstream_addr = "https://127.0.0.1:${upstreamPort}"`,
      'upstream_bin = "bin/kanidmd"',
      'upstream_config = "upstream.json"',
      'upstream_ca = "upstream-ca.crt"',
      'compatibility_file = "compatibility.toml"',
      'health_check_interval = "200ms"',
      'health_check_timeout = "5s"',
      'jwt_private_key = "jwt-private.pem"',
      'jwt_public_key = "jwt-public.pem"',
      'data_dir = "data"',
      'drain_timeout = "3s"',
    ].join('\n'),
  );
  base = `https://localhost:${port}`;
  dispatcher = new Agent({ connect: { ca: fs.readFileSync(listener.caPath) } });
  wrapper = spawn(process.execPath, ['--import', 'tsx', path.resolve('wrapper/src/cli.ts'), '-c', path.join(root, 'config.toml'), 'run'], { stdio: ['ignore', 'pipe', 'pipe'] });
  wrapper.stdout!.on('data', (d) => out.push(String(d)));
  wrapper.stderr!.on('data', (d) => out.push(String(d)));
  await until('readiness', async () => (await get('/readyz')).status === 200);
});

after(async () => {
  if (wrapper.exitCode === null) wrapper.kill('SIGKILL');
  await dispatcher.close();
  fs.rmSync(root, { recursive: true, force: true });
});

test('serves the issuer and proxies everything else to the supervised upstream', async () => {
  const d = await get('/.well-known/openid-configuration');
  assert.equal(d.status, 200);
  assert.equal(JSON.parse(d.text).issuer, base);
  assert.equal((await get('/status')).text, 'true', 'proxied to the upstream');
  assert.match((await get('/metrics')).text, /kiwi_upstream_healthy 1/);
});

test('upstream killed: not ready at once, restarted, ready again', async () => {
  const started = lines().filter((l) => l.msg === 'upstream started');
  const pid = started.at(-1).pid as number;
  process.kill(pid, 'SIGKILL');
  await until('not ready', async () => (await get('/readyz')).status === 503, 3_000);
  await until('ready again', async () => (await get('/readyz')).status === 200);
  assert.match((await get('/metrics')).text, /kiwi_upstream_restarts_total 1/);
});

test('SIGHUP reloads the listener certificate', async () => {
  wrapper.kill('SIGHUP');
  await until('reload log', async () => lines().some((l) => l.msg === 'TLS certificate reloaded'), 3_000);
  assert.equal((await get('/healthz')).status, 200);
});

test('SIGTERM: drains, stops the upstream, exits 0', async () => {
  const pid = lines().filter((l) => l.msg === 'upstream started').at(-1).pid as number;
  const exited = new Promise<number | null>((r) => wrapper.once('exit', (code) => r(code)));
  wrapper.kill('SIGTERM');
  assert.equal(await exited, 0, out.join('').slice(-2000));
  assert.throws(() => process.kill(pid, 0), /ESRCH/, 'upstream stopped with the wrapper');
  assert.ok(lines().some((l) => l.msg === 'stopped'));
});
