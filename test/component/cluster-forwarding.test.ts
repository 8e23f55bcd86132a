// distributed_mode = "forwarding": single-use records are consumed by the node that issued them.
// Three in-process nodes on loopback (harness/cluster.ts), real issuers and openid-client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { ClusterHarness, until } from './harness/cluster.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { CookieBrowser } from './harness/cookie-browser.js';
import type { IssuerHarness } from './harness/issuer.js';

const h = new ClusterHarness({ mode: 'forwarding', intervalSecs: 1, login: (v) => new ScriptedLogin(v as unknown as IssuerHarness) });
const node = (i: number) => h.nodes[i]!;
const REDIRECT = 'https://mail.kiwi.test/callback';

before(async () => {
  await h.start();
  node(0).register({ client_id: 'kiwi-mail', redirect_uris: [REDIRECT] });
  await until('all nodes know kiwi-mail', () => h.nodes.every((n) => !!n.cluster.clients.find('kiwi-mail')));
});
after(() => h.close());

/** Signs in through node `i` and returns the code (not yet exchanged) and its PKCE verifier. */
async function codeFrom(i: number, scope = 'openid offline_access') {
  const config = await h.rp(i, 'kiwi-mail', oidc.ClientSecretBasic(node(0).secrets['kiwi-mail']!));
  const verifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(config, { scope, prompt: 'consent', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', redirect_uri: REDIRECT });
  const landed = await new CookieBrowser(h.via(i) as unknown as IssuerHarness).go(url.href);
  const code = landed.url.searchParams.get('code');
  assert.ok(code, landed.url.href);
  return { config, verifier, code: code!, url: landed.url };
}

function tokenRequest(i: number, fields: Record<string, string>) {
  const secret = node(0).secrets['kiwi-mail']!;
  return h.via(i).http('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`kiwi-mail:${secret}`).toString('base64') },
    body: new URLSearchParams(fields).toString(),
  });
}

async function replicated(model: string, id: string, nodes: number[]) {
  await until(`${model} on nodes ${nodes.join(',')}`, async () => {
    for (const i of nodes) if (!(await node(i).store.find(model, id))) return false;
    return true;
  });
}

test('the same code posted concurrently to nodes 2 and 3 succeeds exactly once', async () => {
  for (let round = 0; round < 3; round++) {
    const { code, verifier } = await codeFrom(0);
    await replicated('AuthorizationCode', code, [1, 2]);
    const fields = { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier };
    const results = await Promise.all([tokenRequest(1, fields), tokenRequest(2, fields)]);
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 400], results.map((r) => r.text).join(' | '));
    assert.equal(JSON.parse(results.find((r) => r.status === 400)!.text).error, 'invalid_grant');
  }
  const metrics = await node(1).metrics.registry.metrics() + await node(2).metrics.registry.metrics();
  assert.match(metrics, /kiwi_cluster_forwarded_total\{op="consume",result="consumed"\} [1-9]/);
  assert.match(metrics, /kiwi_cluster_forwarded_total\{op="consume",result="already_consumed"\} [1-9]/);
});

test('a refresh token reused on another node revokes the whole family on every node', async () => {
  const { code, verifier } = await codeFrom(0);
  const first = JSON.parse((await tokenRequest(0, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier })).text);
  assert.ok(first.refresh_token, JSON.stringify(first));
  const rotated = JSON.parse((await tokenRequest(0, { grant_type: 'refresh_token', refresh_token: first.refresh_token })).text);
  assert.ok(rotated.refresh_token && rotated.refresh_token !== first.refresh_token);
  await replicated('RefreshToken', first.refresh_token, [1]);
  // The rotated-out token again, at node 2.
  const reuse = await tokenRequest(1, { grant_type: 'refresh_token', refresh_token: first.refresh_token });
  assert.equal(reuse.status, 400);
  assert.equal(JSON.parse(reuse.text).error, 'invalid_grant');
  // The current token of the family is dead everywhere, and so is its access token.
  await until('family revoked on every node', async () => {
    for (const i of [0, 1, 2]) if (await node(i).store.find('RefreshToken', rotated.refresh_token)) return false;
    return true;
  });
  for (const i of [0, 1, 2]) {
    const r = await tokenRequest(i, { grant_type: 'refresh_token', refresh_token: rotated.refresh_token });
    assert.equal(r.status, 400, `node ${i + 1}: ${r.text}`);
    const info = await h.via(i).http('/oauth2/userinfo', { headers: { authorization: `Bearer ${rotated.access_token}` } });
    assert.equal(info.status, 401, `node ${i + 1} userinfo`);
  }
});

test('while the issuing node is down its codes cannot be exchanged elsewhere (fail closed), and work again when it is back', async () => {
  const { code, verifier } = await codeFrom(2);
  await replicated('AuthorizationCode', code, [0, 1]);
  await node(2).stop();
  try {
    const r = await tokenRequest(1, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
    assert.equal(r.status, 503, r.text);
    assert.equal(JSON.parse(r.text).error, 'temporarily_unavailable');
  } finally {
    await node(2).start();
  }
  const r = await tokenRequest(1, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
  assert.equal(r.status, 200, r.text);
});

test('a code or refresh token is usable on another node at once, before gossip brought it there', async () => {
  const { code, verifier } = await codeFrom(0);
  // No waiting: node 2 fetches the code (and its grant, session, account) from the peers.
  const first = await tokenRequest(1, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
  assert.equal(first.status, 200, first.text);
  let rt = JSON.parse(first.text).refresh_token as string;
  // Rotate alternately on nodes 1, 2, 3: each token was issued a moment ago on another node.
  for (let i = 0; i < 6; i++) {
    const r = await tokenRequest(i % 3, { grant_type: 'refresh_token', refresh_token: rt });
    assert.equal(r.status, 200, `rotation ${i} at node ${(i % 3) + 1}: ${r.text}`);
    rt = JSON.parse(r.text).refresh_token;
  }
  const text = (await Promise.all(h.nodes.map((n) => n.metrics.registry.metrics()))).join('\n');
  assert.match(text, /kiwi_cluster_forwarded_total\{op="lookup",result="found"\} [1-9]/);
});
