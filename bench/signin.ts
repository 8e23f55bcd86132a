// What a sign-in costs, and Kiwi ID's token endpoint next to Kanidm's own, on
// one real Kiwi ID node with its real Kanidm, measured side by side in one run:
//
//   1. browserless authorization-code round trips per second: Kanidm sign-in
//      through its API (password + TOTP), then service → Kiwi ID /authorize →
//      Kanidm /ui/oauth2 → Kiwi ID callback → code → Kiwi ID /oauth2/token;
//      beside it the same at Kanidm alone (its own OAuth2 client, its token
//      endpoint) — the difference is what Kiwi ID adds to a sign-in;
//   2. the refresh-token grant: Kiwi ID's /oauth2/token vs Kanidm's, each
//      with its own rotating token chains;
//   3. the client-credentials grant: Kiwi ID vs Kanidm.
//
// Every row is the same load shape (N concurrent workers, keep-alive, T
// seconds after a warm-up). The run fails only on errors (a non-2xx answer).
//
//   node --import tsx bench/signin.ts [seconds=8] [concurrency=4]
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { Agent, Pool } from 'undici';
import { launchTrusting } from '../test/e2e/browser.js';
import { HttpBrowser } from '../test/integration/harness/http-browser.js';
import { kanidmApiLogin } from '../test/integration/harness/kanidm-auth.js';
import { enrolPasswordAndTotp } from '../test/integration/harness/kanidm-ui.js';
import { KiwiNode } from '../test/integration/harness/kiwi-node.js';
import fs from 'node:fs';

const seconds = Number(process.argv[2] ?? 8);
const concurrency = Number(process.argv[3] ?? 4);
const PASSWORD = 'violet-orbit-lantern-harbour-52';
const RP = 'https://rp.bench.invalid/callback'; // never visited: the walk stops at the first foreign URL

interface Row {
  name: string;
  ok: number;
  seconds: number;
  lat: number[];
}

async function measure(name: string, worker: (i: number) => Promise<void>, warmupMs = 1500): Promise<Row> {
  const loop = async (until: number, lat: number[] | null, i: number) => {
    while (Date.now() < until) {
      const t0 = process.hrtime.bigint();
      await worker(i);
      lat?.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  const warm = Date.now() + warmupMs;
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(warm, null, i)));
  const lat: number[] = [];
  const start = Date.now();
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(start + seconds * 1000, lat, i)));
  return { name, ok: lat.length, seconds: (Date.now() - start) / 1000, lat: lat.sort((a, b) => a - b) };
}

function print(rows: Row[]): void {
  const pct = (r: Row, p: number) => r.lat[Math.min(r.lat.length - 1, Math.floor((p / 100) * r.lat.length))]!.toFixed(1);
  for (const r of rows) {
    console.log(`  ${r.name.padEnd(44)} ${(r.ok / r.seconds).toFixed(1).padStart(8)} /s   p50 ${pct(r, 50).padStart(6)} ms   p99 ${pct(r, 99).padStart(6)} ms`);
  }
  if (rows.length === 2) console.log(`  ratio (first / second): ${(rows[0]!.ok / rows[0]!.seconds / (rows[1]!.ok / rows[1]!.seconds)).toFixed(2)}`);
}

const pkce = () => {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
};

async function form(pool: Pool, path: string, fields: Record<string, string>, auth?: string): Promise<Record<string, string>> {
  const res = await pool.request({
    path,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${path} answered ${res.statusCode}: ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

const basic = (id: string, secret: string) => 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');

// Sign-ins from one address far beyond the default limit: this benchmark
// measures cost, not the brute-force guard.
const node = new KiwiNode({ name: 'bench', extraConfig: ['auth_rate_limit = 0'], keepOutput: 200 });
try {
  await node.init();
  await node.start();
  await node.loginIdmAdmin();
  const cli = async (...args: string[]) => {
    const r = await node.kanidm(args);
    if (r.exitCode !== 0) throw new Error(`kanidm ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await cli('person', 'create', 'bench', 'Bench User');
  const link = (await node.kiwi(['reset-link', 'bench'])).stdout.split('\n')[0]!;
  const chromium = await launchTrusting(node.caPath);
  const totp = await enrolPasswordAndTotp(await (await chromium.browser.newContext()).newPage(), link, PASSWORD).finally(() => chromium.close());

  // The service at Kiwi ID, and its twin registered at Kanidm directly.
  const added = await node.kiwi(['client', 'add', 'bench-rp', '--redirect-uri', RP]);
  const kiwiSecret = /client_secret: (\S+)/.exec(added.stdout)![1]!;
  const svc = await node.kiwi(['client', 'add', 'bench-svc', '--grant', 'client_credentials']);
  const svcSecret = /client_secret: (\S+)/.exec(svc.stdout)![1]!;
  await cli('system', 'oauth2', 'create', 'bench-direct', 'Bench direct', 'https://rp.bench.invalid');
  await cli('system', 'oauth2', 'add-redirect-url', 'bench-direct', RP);
  await cli('system', 'oauth2', 'update-scope-map', 'bench-direct', 'idm_all_persons', 'openid', 'profile', 'email', 'groups');
  await cli('system', 'oauth2', 'disable-consent-prompt', 'bench-direct');
  // Kanidm grants client credentials through the scope map of a group the client itself is in.
  await cli('group', 'create', 'bench_clients');
  await cli('group', 'add-members', 'bench_clients', 'bench-direct');
  await cli('system', 'oauth2', 'update-scope-map', 'bench-direct', 'bench_clients', 'bench');
  const kanidmSecret = JSON.parse((await cli('system', 'oauth2', 'show-basic-secret', 'bench-direct', '-o', 'json')).trim().split('\n').pop()!).secret as string;

  const dispatcher = node.dispatcher!;
  const kiwiPool = new Pool(node.base, { connections: concurrency * 2, connect: { ca: fs.readFileSync(node.caPath) } });
  const kanidmCa = fs.readFileSync(node.upstreamCaPath);
  const kanidmPool = new Pool(node.upstreamUrl, { connections: concurrency * 2, connect: { ca: kanidmCa } });
  const kanidmAgent = new Agent({ connect: { ca: kanidmCa } });

  /** One sign-in: Kanidm login over its API, then the code flow; returns the token response. */
  async function kiwiRoundTrip(): Promise<Record<string, string>> {
    const b = new HttpBrowser(dispatcher, [node.base]);
    await kanidmApiLogin(b, node.base, { username: 'bench', password: PASSWORD, totp });
    const { verifier, challenge } = pkce();
    const q = new URLSearchParams({ client_id: 'bench-rp', response_type: 'code', scope: 'openid profile groups offline_access', redirect_uri: RP, state: 's', nonce: 'n', code_challenge: challenge, code_challenge_method: 'S256', prompt: 'consent' });
    const back = await b.go(`${node.base}/oauth2/authorize?${q}`);
    const code = back.url.searchParams.get('code');
    if (!code || !back.url.href.startsWith(RP)) throw new Error(`no code: ended at ${back.url.href} (${back.status}) ${back.text.slice(0, 200)}`);
    return form(kiwiPool, '/oauth2/token', { grant_type: 'authorization_code', code, redirect_uri: RP, code_verifier: verifier }, basic('bench-rp', kiwiSecret));
  }

  /** The same sign-in at Kanidm alone: its authorise UI with the session cookie, its token endpoint. */
  async function kanidmRoundTrip(): Promise<Record<string, string>> {
    const b = new HttpBrowser(dispatcher, [node.base]);
    await kanidmApiLogin(b, node.base, { username: 'bench', password: PASSWORD, totp });
    const { verifier, challenge } = pkce();
    const q = new URLSearchParams({ client_id: 'bench-direct', response_type: 'code', scope: 'openid profile groups', redirect_uri: RP, state: 's', nonce: 'n', code_challenge: challenge, code_challenge_method: 'S256' });
    const back = await b.go(`${node.base}/ui/oauth2?${q}`);
    const code = back.url.searchParams.get('code');
    if (!code) throw new Error(`no code from Kanidm: ended at ${back.url.href} (${back.status}) ${back.text.slice(0, 200)}`);
    return form(kanidmPool, '/oauth2/token', { grant_type: 'authorization_code', code, redirect_uri: RP, code_verifier: verifier }, basic('bench-direct', kanidmSecret));
  }

  console.log(`Kiwi ID ${node.base} with Kanidm 1.11.1, ${os.cpus().length} cores, ${concurrency} concurrent workers, ${seconds} s per row`);
  console.log('\n1. a whole sign-in (Kanidm API login + authorization code + token)');
  print([await measure('through Kiwi ID (service → Kiwi ID → Kanidm)', () => kiwiRoundTrip().then(() => undefined)),
    await measure('Kanidm alone (its own OAuth2 client)', () => kanidmRoundTrip().then(() => undefined))]);

  console.log('\n2. refresh-token grant (every refresh rotates; one chain per worker)');
  const kiwiChains = await Promise.all(Array.from({ length: concurrency }, async () => (await kiwiRoundTrip()).refresh_token!));
  const kanidmChains = await Promise.all(Array.from({ length: concurrency }, async () => (await kanidmRoundTrip()).refresh_token!));
  print([
    await measure('Kiwi ID /oauth2/token', async (i) => {
      kiwiChains[i] = (await form(kiwiPool, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: kiwiChains[i]! }, basic('bench-rp', kiwiSecret))).refresh_token!;
    }),
    await measure('Kanidm /oauth2/token', async (i) => {
      kanidmChains[i] = (await form(kanidmPool, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: kanidmChains[i]! }, basic('bench-direct', kanidmSecret))).refresh_token!;
    }),
  ]);

  console.log('\n3. client-credentials grant');
  print([
    await measure('Kiwi ID /oauth2/token', () => form(kiwiPool, '/oauth2/token', { grant_type: 'client_credentials' }, basic('bench-svc', svcSecret)).then(() => undefined)),
    await measure('Kanidm /oauth2/token', () => form(kanidmPool, '/oauth2/token', { grant_type: 'client_credentials', scope: 'bench' }, basic('bench-direct', kanidmSecret)).then(() => undefined)),
  ]);
  await kiwiPool.close();
  await kanidmPool.close();
  await kanidmAgent.close();
} finally {
  await node.close();
}
