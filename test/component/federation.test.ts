// Federated sign-in with a real upstream peer: upstream B is another Kiwi ID
// issuer (its own keys, store, CA and host), where the local Kiwi ID is
// registered as a private_key_jwt client. A service (openid-client) signs in
// at local; the user picks B on the sign-in step, signs in there, comes back
// and gets tokens for the linked local person. See harness/federation.ts for
// what stands in for Kanidm.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { FederatedPair } from './harness/federation.js';
import type { WebBrowser, Page } from './harness/web-browser.js';

const pair = new FederatedPair({ idpB: { default_amr: ['pwd'] } });
const SERVICE_CB = 'https://mail.kiwi.test/callback';
let rp: oidc.Configuration;

before(async () => {
  await pair.start();
  pair.local.register({ client_id: 'kiwi-mail', client_name: 'Kiwi Mail', redirect_uris: [SERVICE_CB] });
  rp = await pair.local.rp('kiwi-mail', oidc.ClientSecretBasic(pair.local.secrets['kiwi-mail']!));
  pair.directory.add({ uuid: '00000000-0000-4000-8000-00000000a11c', name: 'alice', displayname: 'Alice Local', mails: ['alice@kiwi.test'], groups: ['mail_users@idm.kiwi.test'] });
});
after(() => pair.close());

/** A service starts a sign-in; resolves at the local sign-in step. */
async function startAtService(browser: WebBrowser, extra: Record<string, string> = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: SERVICE_CB,
    scope: 'openid profile email groups',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  const page = await browser.go(url);
  return { page, verifier, state, nonce };
}

/** Presses the sign-in step's button `value` (a GET form). */
function choose(page: Page, value: string): URL {
  const action = /<form method="get" action="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(action, `a sign-in form on ${page.url.pathname}: ${page.text.slice(0, 300)}`);
  assert.ok(page.text.includes(`name="login" value="${value}"`), `a button for ${value}`);
  const u = new URL(action!.replace(/&amp;/g, '&'), page.url);
  u.searchParams.set('login', value);
  return u;
}

async function signInWithB(browser: WebBrowser) {
  const started = await startAtService(browser);
  const landed = await browser.go(choose(started.page, 'kiwi-b'));
  return { ...started, landed };
}

test('the sign-in step offers Kanidm and one button per upstream IdP', async () => {
  const browser = pair.browser();
  const { page } = await startAtService(browser);
  assert.equal(page.status, 200);
  assert.match(page.url.pathname, /^\/oauth2\/interaction\//);
  assert.match(page.text, /Kanidm \(password or passkey\)/);
  assert.match(page.text, /Partner Kiwi ID/);
  assert.match(page.text, /to continue to <strong>Kiwi Mail<\/strong>/);
  assert.doesNotMatch(page.text, /<script|<link|https?:\/\/(?!localhost)/, 'self-contained page');
  // Choosing Kanidm is the built-in login (the scripted Kanidm step here).
  const before = pair.localLogin.started;
  const done = await browser.go(choose(page, 'kanidm'));
  assert.equal(pair.localLogin.started, before + 1);
  assert.equal(done.url.origin + done.url.pathname, SERVICE_CB);
});

test('admin-linked upstream identity signs in as the local person: default_groups, amr fed', async () => {
  pair.upstreamLogin.user = { sub: 'b-bob', preferred_username: 'bob', email: 'bob@partner.test', email_verified: true, groups: ['b-staff'] };
  await pair.federation.links.link({ issuer: pair.upstream.issuer, idp: 'kiwi-b', upstream_sub: 'b-bob', person: '00000000-0000-4000-8000-00000000a11c', how: 'admin' });
  const browser = pair.browser();
  const { landed, verifier, state, nonce } = await signInWithB(browser);
  assert.ok(browser.visited.some((u) => u.origin === pair.upstream.issuer), 'went through upstream B');
  assert.equal(landed.url.origin + landed.url.pathname, SERVICE_CB, `landed at the service: ${landed.url.href} ${landed.text.slice(0, 200)}`);
  const tokens = await oidc.authorizationCodeGrant(rp, landed.url, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const claims = await verify(tokens.id_token!, pair.local.key.publicPem, { issuer: pair.local.issuer, audience: 'kiwi-mail' });
  assert.equal(claims.sub, '00000000-0000-4000-8000-00000000a11c');
  assert.equal(claims.preferred_username, 'alice@idm.kiwi.test');
  assert.equal(claims.email, 'alice@kiwi.test');
  assert.deepEqual(claims.groups, ['mail_users@idm.kiwi.test', 'partners']);
  assert.deepEqual(claims.amr, ['fed', 'pwd']);
  const link = await pair.federation.links.find(pair.upstream.issuer, 'b-bob');
  assert.ok(link?.last_used_at, 'the link records its use');
  assert.match(await pair.metric('kiwi_federation_signins_total'), /idp="kiwi-b",result="success"} 1/);
  await pair.federation.links.unlink(pair.upstream.issuer, 'b-bob');
});
