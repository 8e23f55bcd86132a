// The private-bridge boundary, with real network namespaces: the bundled
// wrapper runs in namespace "bridge side" at 10.10.20.10 (veth), its upstream
// on that namespace's loopback; a second namespace at 10.10.20.11 plays a
// KiwiStack service. From there the wrapper answers on 10.10.20.10:8443 and a
// JWT it issues verifies with jwt-public.pem alone, while the upstream is not
// reachable. The upstream is the scripted child of the supervisor tests (the
// pinned Kanidm cannot be built here), bound like Kanidm: 127.0.0.1:8443 only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { closeAll } from './harness/cleanup.js';
import { WrapperProcess } from './harness/wrapper-process.js';

const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
// Unique names (other test runs share the machine); scripts/test sets
// KIWI_TEST_RUN and checks afterwards that no namespace of its run is left.
const tag = randomBytes(3).toString('hex');
const run = process.env.KIWI_TEST_RUN ?? 'manual';
const NS_BRIDGE = `kiwi-a-${run}-${tag}`;
const NS_SERVICE = `kiwi-b-${run}-${tag}`;
const VETH_A = `kv-a-${tag}`; // interface names: 15 characters at most
const VETH_B = `kv-b-${tag}`;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-netns-'));
const artifact = path.join(root, 'artifact');
const kiwi = path.join(artifact, 'opt/kiwi/bin/kiwi-id');
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
let w: WrapperProcess;

/** Runs the probe client inside the service namespace. */
function probe(url: string, form?: Record<string, string>): { status?: number; body?: string; error?: string } {
  const args = ['netns', 'exec', NS_SERVICE, process.execPath, path.resolve('test/component/fixtures/probe.mjs'), url, w.caPath];
  if (form) args.push(JSON.stringify(form));
  return JSON.parse(execFileSync('ip', args, { encoding: 'utf8' }));
}

before(async () => {
  if (!canNetns) return;
  const b = spawnSync('bash', ['scripts/build-artifact', artifact], { encoding: 'utf8' });
  assert.equal(b.status, 0, b.stderr);
  ip('netns', 'add', NS_BRIDGE);
  ip('netns', 'add', NS_SERVICE);
  ip('link', 'add', VETH_A, 'type', 'veth', 'peer', 'name', VETH_B);
  ip('link', 'set', VETH_A, 'netns', NS_BRIDGE);
  ip('link', 'set', VETH_B, 'netns', NS_SERVICE);
  ip('-n', NS_BRIDGE, 'addr', 'add', '10.10.20.10/24', 'dev', VETH_A);
  ip('-n', NS_SERVICE, 'addr', 'add', '10.10.20.11/24', 'dev', VETH_B);
  for (const [ns, dev] of [[NS_BRIDGE, VETH_A], [NS_SERVICE, VETH_B]] as const) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', dev, 'up');
  }
  w = new WrapperProcess(path.join(root, 'run'), ['ip', 'netns', 'exec', NS_BRIDGE, kiwi], process.env, {
    listenHost: '10.10.20.10',
    listenPort: 8443,
    upstreamPort: 8443,
    ready: async (self) => probe(`${self.base}/readyz`).status === 200,
  });
  fs.mkdirSync(w.root);
  await w.start();
});

after(() =>
  closeAll(
    () => w?.close(),
    // Deleting a namespace also deletes the veth end inside it; one that never
    // got moved there is deleted by name. Missing ones are fine.
    ...(canNetns ? [NS_BRIDGE, NS_SERVICE].map((ns) => () => spawnSync('ip', ['netns', 'del', ns])) : []),
    ...(canNetns ? [VETH_A, VETH_B].map((dev) => () => spawnSync('ip', ['link', 'del', dev], { stdio: 'ignore' })) : []),
    () => fs.rmSync(root, { recursive: true, force: true }),
  ),
);

test('from the service namespace, the wrapper answers on 10.10.20.10:8443 and proxies to its loopback upstream', { skip: !canNetns && 'needs root and ip netns' }, () => {
  assert.equal(probe('https://10.10.20.10:8443/healthz').status, 200);
  assert.equal(probe('https://10.10.20.10:8443/status').body, 'true', 'reached the upstream through the proxy');
  const d = JSON.parse(probe('https://10.10.20.10:8443/.well-known/openid-configuration').body!);
  assert.equal(d.issuer, 'https://10.10.20.10:8443');
});

test('a JWT issued there verifies with jwt-public.pem alone', { skip: !canNetns && 'needs root and ip netns' }, async () => {
  assert.equal(w.cli('client', 'add', 'kiwi-mail', '--redirect-uri', 'https://mail.kiwi.test/cb').status, 0);
  const secret = w.addServiceAccount('svc');
  const r = probe('https://10.10.20.10:8443/oauth2/token', { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret, resource: 'https://mail.kiwi.test' });
  assert.equal(r.status, 200, r.body ?? r.error);
  const token = JSON.parse(r.body!).access_token as string;
  // All a service has: the public key file.
  const publicPem = fs.readFileSync(path.join(w.root, 'jwt-public.pem'), 'utf8');
  const claims = await verify(token, publicPem, { issuer: 'https://10.10.20.10:8443', audience: 'https://mail.kiwi.test' });
  assert.equal(claims.client_id, 'svc');
});

test('the upstream is not reachable from outside: only the wrapper is bound to the bridge address', { skip: !canNetns && 'needs root and ip netns' }, () => {
  const listening = execFileSync('ip', ['netns', 'exec', NS_BRIDGE, 'ss', '-Hltn'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3])
    .sort();
  assert.deepEqual(listening, ['10.10.20.10:8443', '127.0.0.1:8443']);
  // The same port on the bridge address is the wrapper, never the upstream: its
  // /readyz exists only on the wrapper.
  assert.equal(probe('https://10.10.20.10:8443/readyz').body?.trim(), 'ready');
  // And no route from the service namespace leads to the bridge side's loopback.
  assert.equal(probe('https://127.0.0.1:8443/status').error, 'ECONNREFUSED');
});
