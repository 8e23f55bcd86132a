// distributed_mode = "strict": a quorum of peers approves each code redemption and refresh
// rotation. quorum_k = 0 means floor(live_peers / 2) + 1 approvals (the reference's majority).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { ClusterHarness, until } from './harness/cluster.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { CookieBrowser } from './harness/cookie-browser.js';
import type { IssuerHarness } from './harness/issuer.js';

const h = new ClusterHarness({ mode: 'strict', intervalSecs: 1, quorumTimeoutMs: 500, quorumFallback: false, login: (v) => new ScriptedLogin(v as unknown as IssuerHarness) });
const node = (i: number) => h.nodes[i]!;
const REDIRECT = 'https://mail.kiwi.test/callback';

before(async () => {
  await h.start();
  node(0).register({ client_id: 'kiwi-mail', redirect_uris: [REDIRECT] });
  node(0).register({ client_id: 'svc-backup', grant_types: ['client_credentials'], scopes: ['groups'], redirect_uris: [] });
  await until('all nodes know kiwi-mail', () => h.nodes.every((n) => !!n.cluster.clients.find('kiwi-mail')));
});
after(() => h.close());

/** Signs in at node 1 and redeems the code at node 1; resolves to the token response. */
async function signIn() {
  const config = await h.rp(0, 'kiwi-mail', oidc.ClientSecretBasic(node(0).secrets['kiwi-mail']!));
  const verifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(config, { scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', redirect_uri: REDIRECT });
  const landed = await new CookieBrowser(h.via(0) as unknown as IssuerHarness).go(url.href);
  const code = landed.url.searchParams.get('code')!;
  assert.ok(code, landed.url.href);
  const r = await h.via(0).http('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`kiwi-mail:${node(0).secrets['kiwi-mail']}`).toString('base64') },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }).toString(),
  });
  return { status: r.status, body: JSON.parse(r.text) };
}

/** client_credentials at node 1; resolves to the HTTP status. */
async function serviceToken(): Promise<number> {
  const r = await h.via(0).http('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`svc-backup:${node(0).secrets['svc-backup']}`).toString('base64') },
    body: 'grant_type=client_credentials',
  });
  return r.status;
}

const live = () => node(0).cluster.gossip.livePeers().length;

test('all three up: tokens are issued with the peers\' approval', async () => {
  await until('both peers live', () => live() === 2);
  const r = await signIn();
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await serviceToken(), 200);
  assert.match(await node(0).metrics.registry.metrics(), /kiwi_cluster_quorum_total\{result="approved"\} [1-9]/);
});

test('one of three down: tokens are still issued', async () => {
  await node(2).stop();
  await until('node 3 no longer live', () => live() === 1, 20_000);
  const r = await signIn();
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await serviceToken(), 200);
});

test('two of three down: refused with quorum_fallback = false, issued with a warning when it is true', async () => {
  await node(1).stop();
  await until('no peer live', () => live() === 0, 20_000);
  const refused = await signIn();
  assert.equal(refused.status, 503, JSON.stringify(refused.body));
  assert.equal(refused.body.error, 'temporarily_unavailable');
  assert.match(await node(0).metrics.registry.metrics(), /kiwi_cluster_quorum_total\{result="unavailable"\} [1-9]/);
  assert.equal(await serviceToken(), 503, 'client_credentials is gated too');

  h.o.quorumFallback = true;
  await node(0).stop();
  await node(0).start();
  const issued = await signIn();
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  assert.equal(await serviceToken(), 200);
  assert.ok(node(0).logLines.some((l) => /quorum not reached; issuing anyway/.test(l) && /"level":"?(40|warn)/.test(l)), 'a warning is logged');
});
