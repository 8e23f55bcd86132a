// `kiwi-id run` with `workers = 2`: a primary that supervises the upstream
// and two workers serving the listener. The upstream is the scripted child
// of the supervisor tests (as in run.test.ts); what is asserted is the
// multi-process behaviour: work spread over the workers, one /metrics for
// all of them, the issuer's state shared, health relayed, reload and drain
// reaching every worker, a lost worker replaced.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { form } from './harness/issuer.js';
import { WrapperProcess } from './harness/wrapper-process.js';

const SIGN_IN_LIMIT = 6;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cluster-'));
const w = new WrapperProcess(root, [process.execPath, '--import', 'tsx', path.resolve('wrapper/src/cli/main.ts')], process.env, {
  extraConfig: ['workers = 2', `auth_rate_limit = ${SIGN_IN_LIMIT}`],
});
before(async () => {
  await w.start();
  // Ready means one worker answers; the tests want both.
  await w.until('both workers listening', async () => w.lines().some((l) => l.msg === 'listening'));
});
after(async () => {
  await w.close();
  for (const pid of workerPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  fs.rmSync(root, { recursive: true, force: true });
});

/** Pids that wrote "request" lines, i.e. the workers that answered. */
const requestPids = () => new Set(w.lines().filter((l) => l.msg === 'request').map((l) => l.pid as number));
const workerPids = (): number[] => {
  try {
    return fs
      .readFileSync(`/proc/${w.child.pid}/task/${w.child.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('main.ts'));
  } catch {
    return [];
  }
};
const lastUpstreamPid = () => w.lines().filter((l) => l.msg === 'upstream started').at(-1)!.pid as number;

/** One request on a connection of its own (the cluster hands out connections, not requests). */
async function fresh(p: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; text: string }> {
  const agent = new Agent({ connect: { ca: fs.readFileSync(w.caPath) } });
  try {
    const res = await request(w.base + p, { dispatcher: agent, method, body: method === 'POST' ? '{}' : undefined });
    return { status: res.statusCode, text: await res.body.text() };
  } finally {
    await agent.close();
  }
}

test('two workers answer; the primary supervises the one upstream', async () => {
  assert.equal(workerPids().length, 2);
  assert.equal(w.lines().filter((l) => l.msg === 'upstream started').length, 1);
  for (let i = 0; i < 8; i++) assert.equal((await fresh('/status')).text, 'true');
  await w.until('request lines from both workers', async () => requestPids().size === 2, 5_000);
  assert.deepEqual([...requestPids()].sort(), workerPids().sort());
});

test('/metrics adds up every worker and includes the primary\'s own metrics once', async () => {
  const count = (text: string) =>
    Number(/^kiwi_http_requests_total\{route="proxy",method="GET",status="200"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  const before = count((await fresh('/metrics')).text);
  for (let i = 0; i < 10; i++) assert.equal((await fresh('/status')).status, 200);
  const metrics = (await fresh('/metrics')).text;
  assert.equal(count(metrics) - before, 10, 'requests of both workers are summed');
  assert.equal(metrics.match(/^kiwi_upstream_healthy /gm)?.length, 1);
  assert.match(metrics, /^kiwi_upstream_healthy 1$/m);
});

test('auth_rate_limit is one budget per address for both workers', async () => {
  const attempts: number[] = [];
  for (let i = 0; i < SIGN_IN_LIMIT * 2; i++) attempts.push((await fresh('/v1/auth', 'POST')).status);
  assert.equal(attempts.filter((s) => s !== 429).length, SIGN_IN_LIMIT, `statuses: ${attempts}`);
  assert.deepEqual(attempts.slice(SIGN_IN_LIMIT), Array(SIGN_IN_LIMIT).fill(429), 'every attempt past the limit is refused');
  // Both workers took attempts (connections are spread over them), so the count was shared, not per process.
  const takers = new Set(w.lines().filter((l) => l.msg === 'request' && l.url === '/v1/auth').map((l) => l.pid));
  assert.equal(takers.size, 2, 'both workers answered sign-in attempts');
});

test('the issuer\'s state is shared: a token from one worker is counted by the primary', async () => {
  const secret = w.addServiceAccount('svc');
  const t = await w.get('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc', client_secret: secret }));
  assert.equal(t.status, 200, t.text);
  const metrics = (await fresh('/metrics')).text;
  assert.match(metrics, /kiwi_state_records\{kind="ClientCredentials"\} 1/);
  assert.match(metrics, /kiwi_oidc_events_total\{event="grant.success"\} 1/);
});

test('upstream killed: every worker turns unready, then ready again', async () => {
  process.kill(lastUpstreamPid(), 'SIGKILL');
  await w.until('not ready', async () => (await fresh('/readyz')).status === 503, 3_000);
  await w.until('ready again', async () => {
    const answers = await Promise.all(Array.from({ length: 6 }, () => fresh('/readyz')));
    return answers.every((a) => a.status === 200);
  });
  assert.match((await fresh('/metrics')).text, /^kiwi_upstream_restarts_total 1$/m);
});

test('SIGHUP reaches every worker', async () => {
  const reloads = () => new Set(w.lines().filter((l) => l.msg === 'TLS certificate reloaded').map((l) => l.pid));
  w.child.kill('SIGHUP');
  await w.until('both workers reloaded', async () => reloads().size === 2, 5_000);
  assert.equal((await fresh('/healthz')).status, 200);
});

test('a worker that dies is replaced', async () => {
  const old = workerPids();
  const victim = old[0]!;
  process.kill(victim, 'SIGKILL');
  const newcomers = () => workerPids().filter((p) => !old.includes(p));
  await w.until('a new worker listening', async () => {
    const [added] = newcomers();
    return added !== undefined && w.lines().some((l) => l.msg === 'worker listening' && l.worker_pid === added);
  }, 20_000);
  assert.equal(workerPids().length, 2);
  assert.ok(w.lines().some((l) => l.msg === 'worker exited; starting another'));
  for (let i = 0; i < 4; i++) assert.equal((await fresh('/healthz')).status, 200);
});

test('SIGTERM: workers drain and exit, the upstream stops, the primary exits 0', async () => {
  const workers = workerPids();
  const upstream = lastUpstreamPid();
  assert.equal(await w.stop(), 0, w.out.join('').slice(-2000));
  for (const pid of [...workers, upstream]) assert.throws(() => process.kill(pid, 0), /ESRCH/, `process ${pid} left behind`);
  const drained = new Set(w.lines().filter((l) => l.msg === 'worker draining').map((l) => l.pid));
  assert.deepEqual([...drained].sort(), [...workers].sort(), 'every worker drained');
  assert.ok(w.lines().some((l) => l.msg === 'stopped'));
});
