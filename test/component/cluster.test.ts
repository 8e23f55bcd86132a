// Three Kiwi ID nodes as one identity provider (distributed_mode = "eventual"), in process on
// loopback: real issuers, real mutual-TLS gossip, real openid-client. Kanidm's part (identity
// data) is test/integration's; here the login step is scripted as in issuer-flow.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { randomUUID } from 'node:crypto';
import { ClusterHarness, until } from './harness/cluster.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { CookieBrowser } from './harness/cookie-browser.js';
import type { IssuerHarness } from './harness/issuer.js';
import { readStatus } from '../../wrapper/src/cluster/status.js';
import type { KiwiConfig } from '../../wrapper/src/config/config.js';

const INTERVAL_S = 1;
let login!: ScriptedLogin;
const h = new ClusterHarness({
  mode: 'eventual',
  intervalSecs: INTERVAL_S,
  login: (v) => (login = new ScriptedLogin(v as unknown as IssuerHarness)),
  issuerAliases: (n) => [`https://${n.ip}:9443`],
});
const [n1, n2, n3] = [0, 1, 2].map((i) => () => h.nodes[i]!);

before(async () => {
  await h.start();
  n1().register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'], post_logout_redirect_uris: ['https://mail.kiwi.test/bye'] });
  n1().register({ client_id: 'svc-backup', grant_types: ['client_credentials'], scopes: ['groups'], redirect_uris: [] });
});
after(() => h.close());

const browserVia = (i: number) => new CookieBrowser(h.via(i) as unknown as IssuerHarness);

async function clientCredentials(i: number, id: string, secret: string, resource = 'https://mail.kiwi.test') {
  const r = await h.via(i).http('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64') },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }).toString(),
  });
  return { status: r.status, body: JSON.parse(r.text) };
}

test('every node serves the union of node keys: a token minted on node 1 verifies with node 2\'s JWKS', async () => {
  await until('node 2 knows all three keys', async () => JSON.parse((await h.via(1).http('/oauth2/keys')).text).keys.length === 3);
  // The static client lives in node 1's clients file; use it on node 1.
  const t = await clientCredentials(0, 'svc-backup', n1().secrets['svc-backup']!);
  assert.equal(t.status, 200, JSON.stringify(t.body));
  const jwks = JSON.parse((await h.via(1).http('/oauth2/keys')).text);
  for (const k of jwks.keys) assert.equal(k.d, undefined, 'no private members');
  const { payload, protectedHeader } = await jwtVerify(t.body.access_token, createLocalJWKSet(jwks), { issuer: h.issuer, audience: 'https://mail.kiwi.test' });
  assert.equal(protectedHeader.kid, n1().key.kid);
  assert.equal(payload.client_id, 'svc-backup');
});

test('a client added on node 2 works on node 3 within two intervals', async () => {
  const since = await h.okRounds(1, 2);
  n2().register({ client_id: 'svc-files', grant_types: ['client_credentials'], scopes: ['groups'], redirect_uris: [] });
  // Node 2 publishes its changed file at the start of a round; node 3 receives it by gossip.
  await h.twoRoundsAfter(1, 2, since);
  const t = await clientCredentials(2, 'svc-files', n2().secrets['svc-files']!);
  assert.equal(t.status, 200, JSON.stringify(t.body));
});

test('sign in on node 1, single sign-on on node 3; logout on node 1 ends the session on node 3 within two intervals', async () => {
  const config = await h.rp(0, 'kiwi-mail', oidc.ClientSecretBasic(n1().secrets['kiwi-mail']!));
  const browser = browserVia(0);
  const verifier = oidc.randomPKCECodeVerifier();
  const params = { scope: 'openid profile', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', redirect_uri: 'https://mail.kiwi.test/callback', state: 's1' };
  const landed = await browser.go(oidc.buildAuthorizationUrl(config, params).href);
  assert.equal(landed.url.pathname, '/callback');
  const tokens = await oidc.authorizationCodeGrant(config, landed.url, { pkceCodeVerifier: verifier, expectedState: 's1' });
  assert.ok(tokens.id_token);

  // The same browser (cookies) now reaches node 3: SSO without a new login, once the session is there.
  const sso = new CookieBrowser(h.via(2) as unknown as IssuerHarness);
  (sso as any).jar = (browser as any).jar;
  // (A request reaching node 3 before the session does would start a new session there: the
  // eventual mode's window, so wait for the record itself.)
  const sid = (browser as any).jar.get('kiwi_session') as string;
  await h.twoRoundsAfter(0, 2, await h.okRounds(0, 2));
  assert.ok(await n3().store.find('Session', sid), 'node 3 has the session within two rounds');
  const before = login.started;
  const r = await sso.go(oidc.buildAuthorizationUrl(config, { ...params, prompt: 'none', state: 's2' }).href);
  assert.equal(r.url.pathname, '/callback');
  assert.ok(r.url.searchParams.has('code'), r.url.href);
  assert.equal(login.started, before, 'no second login');
  // Exchanged where it was issued (in eventual mode another node has it after a gossip round).
  h.routeTo(config, 2);
  await oidc.authorizationCodeGrant(config, r.url, { pkceCodeVerifier: verifier, expectedState: 's2' });
  h.routeTo(config, 0);

  // Logout at node 1 (id_token_hint verified there).
  const end = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'https://mail.kiwi.test/bye' });
  const page = await browser.go(end.href);
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.text)?.[1];
  const action = /action="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(xsrf && action, page.text.slice(0, 300));
  // Keep the session cookie for node 3: logout clears it in this browser, but a stolen cookie must not work either.
  const stolen = new Map((browser as any).jar);
  const done = await browser.go(action!, { method: 'POST', body: new URLSearchParams({ xsrf: xsrf!, logout: 'yes' }).toString() });
  assert.equal(done.url.pathname, '/bye');
  await h.twoRoundsAfter(0, 2, await h.okRounds(0, 2));
  (sso as any).jar = stolen;
  const gone = await sso.go(oidc.buildAuthorizationUrl(config, { ...params, prompt: 'none', state: 's3' }).href);
  assert.equal(gone.url.searchParams.get('error'), 'login_required', `node 3 ended the session within two rounds: ${gone.url.href}`);
});

test('an id_token minted on node 1 is accepted as id_token_hint on node 2 (peer keys verify there)', async () => {
  const config = await h.rp(0, 'kiwi-mail', oidc.ClientSecretBasic(n1().secrets['kiwi-mail']!));
  const browser = browserVia(0);
  const verifier = oidc.randomPKCECodeVerifier();
  const landed = await browser.go(oidc.buildAuthorizationUrl(config, { scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', redirect_uri: 'https://mail.kiwi.test/callback' }).href);
  const tokens = await oidc.authorizationCodeGrant(config, landed.url, { pkceCodeVerifier: verifier });
  await until('node 2 has the client', () => !!n2().cluster.clients.find('kiwi-mail'));
  const end = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'https://mail.kiwi.test/bye' });
  const r = await h.via(1).http(end.pathname + end.search);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.match(r.text, /name="xsrf"/);
});

test('status: every node sees the others live with no lag once quiet', async () => {
  await until('in sync', () => h.nodes.every((n) => n.cluster.status().peers.every((p) => p.live && p.lag_entries === 0)));
  const s = n1().cluster.status();
  assert.deepEqual(s.nodes.map((x) => x.node_id).sort(), h.nodes.map((x) => x.nodeId).sort());
  assert.equal(s.mode, 'eventual');
  const text = await n1().metrics.registry.metrics();
  assert.match(text, /kiwi_gossip_rounds_total\{peer="[^"]+",result="ok"\} [1-9]/);
  assert.match(text, /kiwi_gossip_lag_seconds/);
});

test('issuer_aliases: a client assertion addressed to this node\'s alias is accepted, another audience is not', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'svc-jwt-1', alg: 'ES256', use: 'sig' };
  n1().register({ client_id: 'svc-jwt', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk as Record<string, unknown>] }, redirect_uris: [] });
  const assertion = (aud: string) =>
    new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'svc-jwt-1' }).setIssuer('svc-jwt').setSubject('svc-jwt').setAudience(aud).setJti(randomUUID()).setIssuedAt().setExpirationTime('1m').sign(privateKey);
  const post = async (aud: string) =>
    h.via(0).http('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(aud) }).toString(),
    });
  const ok = await post(`https://${n1().ip}:9443`);
  assert.equal(ok.status, 200, ok.text);
  const refused = await post('https://elsewhere.kiwi.test');
  assert.equal(refused.status, 401, refused.text);
  assert.equal(JSON.parse(refused.text).error, 'invalid_client');
});

test('a peer that only reaches us (our own rounds stopped) stays live, in `cluster status` as in the quorum\'s view', async () => {
  const node = n1();
  await node.cluster.gossip.stop();
  const stoppedAt = Date.now();
  try {
    const onDisk = () => readStatus({ cluster: node.config(), data_dir: node.dataDir } as KiwiConfig);
    // Only inbound exchanges can move last contact past three of our intervals after the stop.
    await until('inbound contact recorded on disk', () =>
      onDisk().peers.every((p) => (p.last_contact_at ?? 0) > stoppedAt + 3 * INTERVAL_S * 1000));
    const status = onDisk();
    assert.deepEqual(status.peers.filter((p) => p.live).map((p) => p.node_id).sort(), node.cluster.gossip.livePeers().sort());
    assert.equal(node.cluster.gossip.livePeers().length, 2);
  } finally {
    node.cluster.gossip.start();
  }
});
