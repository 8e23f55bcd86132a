// Cluster benchmarks, side by side in one run (issue 14):
//   1. convergence: 10k records written on node 1 of a 3-node cluster until nodes 2 and 3 have
//      all of them, for each interval_secs given; reported in seconds and in intervals
//   2. token endpoint cost of distributed_mode "forwarding" vs "off": refresh-token rotations;
//      in "off" each rotation is local; in "forwarding" the rotations alternate between nodes,
//      so every one is fetched from and consumed at the node that issued the token
// Everything runs on loopback (harness of the component tests: real gossip over mutual TLS,
// real issuers). Ratios are what matter; absolute numbers depend on the machine.
//
//   node --import tsx bench/cluster.ts [records=10000] [intervals=1,2] [rotations=300]
import os from 'node:os';
import * as oidc from 'openid-client';
import { ClusterHarness, until } from '../test/component/harness/cluster.js';
import { ScriptedLogin } from '../test/component/harness/scripted-login.js';
import { CookieBrowser } from '../test/component/harness/cookie-browser.js';
import type { IssuerHarness } from '../test/component/harness/issuer.js';
import type { DistributedMode } from '../wrapper/src/config/cluster.js';

const records = Number(process.argv[2] ?? 10_000);
const intervals = (process.argv[3] ?? '1,2').split(',').map(Number);
const rotations = Number(process.argv[4] ?? 300);
const REDIRECT = 'https://mail.kiwi.test/callback';

async function convergence(intervalSecs: number): Promise<number> {
  const h = new ClusterHarness({ mode: 'eventual', intervalSecs });
  await h.start();
  try {
    await until('cluster in sync', () => h.nodes.every((n) => n.cluster.status().peers.every((p) => p.live && p.lag_entries === 0)), 60_000);
    const failures = async () => {
      const text = (await Promise.all(h.nodes.map((n) => n.metrics.registry.metrics()))).join('\n');
      return [...text.matchAll(/kiwi_gossip_rounds_total\{peer="[^"]+",result="(error|rejected)"\} (\d+)/g)].reduce((a, m) => a + Number(m[2]), 0);
    };
    // (Exchanges before every node listened fail; only those during the measurement count.)
    const failedBefore = await failures();
    const store = h.nodes[0]!.cluster.store;
    const t0 = Date.now();
    for (let i = 0; i < records; i++) {
      await store.upsert('Grant', `bench-${i}`, { accountId: `u${i}`, clientId: 'kiwi-mail', openid: { scope: 'openid' } }, 3600);
    }
    const written = Date.now() - t0;
    await until(
      'nodes 2 and 3 have every record',
      async () => {
        for (const n of h.nodes.slice(1)) if (((await n.store.countLive()).Grant ?? 0) < records) return false;
        return true;
      },
      600_000,
    );
    const total = (Date.now() - t0) / 1000;
    const after = total - written / 1000;
    const failed = (await failures()) - failedBefore;
    if (process.env.BENCH_DEBUG) for (const n of h.nodes) for (const l of n.logLines) if (/gossip exchange failed/.test(l)) console.log(l.slice(0, 400));
    console.log(`  interval_secs=${intervalSecs}: written in ${(written / 1000).toFixed(1)} s; on all 3 nodes ${total.toFixed(1)} s after the first write, ${after.toFixed(1)} s (${(after / intervalSecs).toFixed(1)} intervals) after the last; failed exchanges: ${failed}`);
    return total;
  } finally {
    await h.close();
  }
}

async function tokenCost(mode: DistributedMode): Promise<{ rps: number; p50: number; p99: number }> {
  const h = new ClusterHarness({ mode, intervalSecs: 1, login: (v) => new ScriptedLogin(v as unknown as IssuerHarness) });
  await h.start();
  try {
    const n1 = h.nodes[0]!;
    n1.register({ client_id: 'kiwi-mail', redirect_uris: [REDIRECT] });
    await until('clients everywhere', () => h.nodes.every((n) => !!n.cluster.clients.find('kiwi-mail')));
    const auth = 'Basic ' + Buffer.from(`kiwi-mail:${n1.secrets['kiwi-mail']}`).toString('base64');
    const post = (i: number, fields: Record<string, string>) =>
      h.via(i).http('/oauth2/token', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
    const config = await h.rp(0, 'kiwi-mail', oidc.ClientSecretBasic(n1.secrets['kiwi-mail']!));
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, { scope: 'openid offline_access', prompt: 'consent', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', redirect_uri: REDIRECT });
    const landed = await new CookieBrowser(h.via(0) as unknown as IssuerHarness).go(url.href);
    const code = landed.url.searchParams.get('code')!;
    let rt = JSON.parse((await post(0, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier })).text).refresh_token as string;
    const views = [0, 1, 2].map((i) => h.via(i));
    const lat: number[] = [];
    const start = process.hrtime.bigint();
    for (let i = 0; i < rotations; i++) {
      const node = mode === 'off' ? 0 : i % 3;
      const t0 = process.hrtime.bigint();
      const r = await views[node]!.http('/oauth2/token', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(rt)}` });
      if (r.status !== 200) throw new Error(`${mode}: rotation ${i} at node ${node + 1}: ${r.status} ${r.text}`);
      rt = JSON.parse(r.text).refresh_token;
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    lat.sort((a, b) => a - b);
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!;
    return { rps: rotations / secs, p50: pct(50), p99: pct(99) };
  } finally {
    await h.close();
  }
}

console.log(`cluster benchmarks, 3 nodes on loopback, ${os.cpus().length} cores`);
console.log(`1. convergence of ${records} records written on node 1:`);
const conv: Array<[number, number]> = [];
for (const s of intervals) conv.push([s, await convergence(s)]);
console.log(`2. token endpoint, ${rotations} sequential refresh rotations:`);
const off = await tokenCost('off');
const fwd = await tokenCost('forwarding');
const row = (name: string, r: { rps: number; p50: number; p99: number }) =>
  console.log(`  ${name.padEnd(34)} ${r.rps.toFixed(0).padStart(5)} req/s   p50 ${r.p50.toFixed(1)} ms   p99 ${r.p99.toFixed(1)} ms`);
row('off (local rotation)', off);
row('forwarding (every rotation remote)', fwd);
console.log(`  forwarding/off throughput ratio ${(fwd.rps / off.rps).toFixed(2)}, p50 ratio ${(fwd.p50 / off.p50).toFixed(2)}`);
process.exit(0);
