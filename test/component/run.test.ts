// `kiwi-id run` as a process: config → pin check → supervised child → front
// door + issuer → signals. The supervised child is the scripted process of the
// supervisor tests (pinned by its own checksum); nothing here claims Kanidm
// behaviour — that is test/integration's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { closeAll } from './harness/cleanup.js';
import { form } from './harness/issuer.js';
import { WrapperProcess } from './harness/wrapper-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-run-'));
const w = new WrapperProcess(root, [process.execPath, '--import', 'tsx', path.resolve('wrapper/src/cli/main.ts')]);
before(() => w.start());
after(() => closeAll(() => w.close(), () => fs.rmSync(root, { recursive: true, force: true })));

const lastUpstreamPid = () => w.lines().filter((l) => l.msg === 'upstream started').at(-1)!.pid as number;

test('serves the issuer and proxies everything else to the supervised upstream', async () => {
  const d = await w.get('/.well-known/openid-configuration');
  assert.equal(d.status, 200);
  assert.equal(JSON.parse(d.text).issuer, w.base);
  assert.equal((await w.get('/status')).text, 'true', 'proxied to the upstream');
  assert.match((await w.get('/metrics')).text, /kiwi_upstream_healthy 1/);
  // The upstream's own output is in the JSON log, attributed and redacted.
  const upstreamLines = w.lines().filter((l) => l.msg === 'upstream output');
  assert.ok(upstreamLines.length > 0 && upstreamLines.every((l) => l.component === 'upstream'));
  assert.equal(w.out.join('').includes('hunter2-fixture'), false);
});

test('issuer state shows up in /metrics', async () => {
  const secret = w.addServiceAccount('svc');
  const t = await w.get('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc', client_secret: secret }));
  assert.equal(t.status, 200, t.text);
  const metrics = (await w.get('/metrics')).text;
  assert.match(metrics, /kiwi_state_records\{kind="ClientCredentials"\} 1/);
  assert.match(metrics, /kiwi_oidc_events_total\{event="grant.success"\} 1/);
});

test('upstream killed: not ready at once, restarted, ready again', async () => {
  const killed = lastUpstreamPid();
  const from = w.lines().length;
  process.kill(killed, 'SIGKILL');
  // Readiness follows the supervisor's state; its transitions are in the log
  // (polling /readyz for the short 503 window would race the restart).
  await w.until('a new upstream', async () => lastUpstreamPid() !== killed);
  await w.until('ready again', async () => (await w.get('/readyz')).status === 200);
  const states = w.lines().slice(from).filter((l) => l.msg === 'upstream state').map((l) => `${l.from}->${l.to}`);
  assert.deepEqual(states.slice(0, 2), ['healthy->backoff', 'backoff->starting'], 'unready from the moment the upstream died');
  assert.equal(states.at(-1), 'starting->healthy');
  assert.match((await w.get('/metrics')).text, /kiwi_upstream_restarts_total 1/);
});

test('SIGHUP reloads the listener certificate', async () => {
  w.child.kill('SIGHUP');
  await w.until('reload log', async () => w.lines().some((l) => l.msg === 'TLS certificate reloaded'));
  assert.equal((await w.get('/healthz')).status, 200);
});

test('SIGTERM: drains, stops the upstream, exits 0', async () => {
  const pid = lastUpstreamPid();
  assert.equal(await w.stop(), 0, w.out.join('').slice(-2000));
  assert.throws(() => process.kill(pid, 0), /ESRCH/, 'upstream stopped with the wrapper');
  assert.ok(w.lines().some((l) => l.msg === 'stopped'));
  assert.equal(fs.existsSync(w.pidFile), false, 'pid file removed with the upstream');
});
