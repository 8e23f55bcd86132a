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
import type { Page, WebBrowser } from './harness/web-browser.js';

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
  assert.equal(claims.preferred_username, 'alice');
  assert.equal(claims.email, 'alice@kiwi.test');
  assert.deepEqual(claims.groups, ['mail_users@idm.kiwi.test', 'partners']);
  assert.deepEqual(claims.amr, ['fed', 'pwd']);
  const link = await pair.federation.links.find(pair.upstream.issuer, 'b-bob');
  assert.ok(link?.last_used_at, 'the link records its use');
  assert.match(await pair.metric('kiwi_federation_signins_total'), /idp="kiwi-b",result="success"} 1/);
  await pair.federation.links.unlink(pair.upstream.issuer, 'b-bob');
});

test('an unlinked upstream identity gets a clear page; the service gets access_denied and no code', async () => {
  pair.upstreamLogin.user = { sub: 'b-stranger', preferred_username: 'stranger' };
  const browser = pair.browser();
  const { landed } = await signInWithB(browser);
  assert.equal(landed.status, 403);
  assert.match(landed.text, /Your Partner Kiwi ID account is not linked to a Kiwi ID account/);
  assert.match(landed.text, /href="\/oauth2\/federation\/link"/);
  const back = /<a href="([^"]+)">Return to the service<\/a>/.exec(landed.text)?.[1];
  const done = await browser.go(new URL(back!.replace(/&#38;/g, '&'), landed.url));
  assert.equal(done.url.origin + done.url.pathname, SERVICE_CB);
  assert.equal(done.url.searchParams.get('error'), 'access_denied');
  assert.equal(done.url.searchParams.get('code'), null);
  assert.equal(await pair.federation.links.find(pair.upstream.issuer, 'b-stranger'), undefined);
});

/** Signs in to the service through the built-in (Kanidm) login; leaves a Kiwi ID session in `browser`. */
async function signInWithKanidm(browser: WebBrowser): Promise<void> {
  const { page } = await startAtService(browser);
  const done = await browser.go(choose(page, 'kanidm'));
  assert.equal(done.url.origin + done.url.pathname, SERVICE_CB);
}

const LINK = () => `${pair.local.issuer}/oauth2/federation/link`;

function linkForm(page: Page): { csrf: string } {
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(csrf, `a link form: ${page.text.slice(0, 300)}`);
  return { csrf: csrf! };
}

test('self-service link: signed in with Kanidm moments before, then at the upstream; the link then signs in', async () => {
  const carol = pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000ca201', name: 'carol', mails: ['carol@kiwi.test'], groups: ['staff@idm.kiwi.test'] });
  pair.localLogin.user = { sub: carol.uuid, preferred_username: 'carol' };
  pair.upstreamLogin.user = { sub: 'b-carol', preferred_username: 'carol.b' };
  const browser = pair.browser();
  await signInWithKanidm(browser);

  const page = await browser.go(LINK());
  assert.equal(page.status, 200);
  assert.match(page.text, /Signed in as <strong>carol<\/strong>/);
  assert.match(page.text, /name="idp" value="kiwi-b">Link Partner Kiwi ID/);
  const linked = await browser.go(LINK(), { method: 'POST', form: { ...linkForm(page), idp: 'kiwi-b' } });
  assert.ok(browser.visited.some((u) => u.origin === pair.upstream.issuer), 'signed in at upstream B');
  assert.equal(linked.status, 200, linked.text.slice(0, 300));
  assert.match(linked.text, /Your Partner Kiwi ID account now signs you in as <strong>carol<\/strong>/);
  const link = await pair.federation.links.find(pair.upstream.issuer, 'b-carol');
  assert.equal(link?.person, carol.uuid);
  assert.equal(link?.how, 'self-service');

  // Another browser, no Kiwi ID session: signing in at B is now enough.
  const other = pair.browser();
  const { landed, verifier, state, nonce } = await signInWithB(other);
  const tokens = await oidc.authorizationCodeGrant(rp, landed.url, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const claims = tokens.claims()!;
  assert.equal(claims.sub, carol.uuid);
  assert.deepEqual(claims.amr, ['fed', 'pwd']);
  assert.deepEqual(claims.groups, ['staff@idm.kiwi.test', 'partners']);
});

test('self-service link needs a recent Kanidm sign-in in this browser and its form token', async () => {
  const dave = pair.directory.add({ uuid: '00000000-0000-4000-8000-00000000da7e', name: 'dave' });
  // No session at all.
  const fresh = pair.browser();
  const none = await fresh.go(LINK());
  assert.match(none.text, /first sign in with Kanidm/);
  assert.doesNotMatch(none.text, /name="csrf"/);

  // A session whose Kanidm sign-in is older than the window.
  pair.localLogin.user = { sub: dave.uuid, preferred_username: 'dave' };
  const stale = pair.browser();
  await signInWithKanidm(stale);
  for (const s of await pair.local.store.list('Session')) {
    if (s.payload.accountId === dave.uuid) await pair.local.store.upsert('Session', s.id, { ...s.payload, loginTs: Number(s.payload.loginTs) - 3600 }, 3600);
  }
  assert.match((await stale.go(LINK())).text, /first sign in with Kanidm/);

  // A session that came from a federated sign-in is no proof of the Kanidm side.
  pair.upstreamLogin.user = { sub: 'b-eve2' };
  await pair.federation.links.link({ issuer: pair.upstream.issuer, idp: 'kiwi-b', upstream_sub: 'b-eve2', person: dave.uuid, how: 'admin' });
  const fed = pair.browser();
  const { landed } = await signInWithB(fed);
  assert.equal(landed.url.origin + landed.url.pathname, SERVICE_CB);
  assert.match((await fed.go(LINK())).text, /first sign in with Kanidm/);

  // A recent Kanidm session, but a forged or reused form token.
  const ok = pair.browser();
  await signInWithKanidm(ok);
  const form = linkForm(await ok.go(LINK()));
  const forged = await ok.go(LINK(), { method: 'POST', form: { csrf: 'forged', idp: 'kiwi-b' } });
  assert.equal(forged.status, 400);
  // The token belongs to this session: another browser cannot use it.
  const thief = pair.browser();
  await signInWithKanidm(thief);
  assert.equal((await thief.go(LINK(), { method: 'POST', form: { ...form, idp: 'kiwi-b' } })).status, 400);
});

test('self-service link to an identity already linked to someone else is refused', async () => {
  const erin = pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000e7117', name: 'erin' });
  pair.localLogin.user = { sub: erin.uuid, preferred_username: 'erin' };
  pair.upstreamLogin.user = { sub: 'b-eve2' }; // linked to dave above
  const browser = pair.browser();
  await signInWithKanidm(browser);
  const page = await browser.go(LINK());
  const res = await browser.go(LINK(), { method: 'POST', form: { ...linkForm(page), idp: 'kiwi-b' } });
  assert.equal(res.status, 409);
  assert.match(res.text, /already linked to another Kiwi ID account/);
  assert.equal((await pair.federation.links.find(pair.upstream.issuer, 'b-eve2'))?.person, '00000000-0000-4000-8000-00000000da7e');
});

test('self-service link during a sign-in: a Kanidm sign-in moments before, the upstream next, then "Link and continue"', async () => {
  const gina = pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000091a0', name: 'gina' });
  pair.localLogin.user = { sub: gina.uuid, preferred_username: 'gina' };
  for (const answer of ['cancel', 'link']) {
    pair.upstreamLogin.user = { sub: `b-gina-${answer}` };
    const browser = pair.browser();
    await signInWithKanidm(browser);
    // The service asks for a fresh sign-in (prompt=login), so the sign-in step shows again.
    const started = await startAtService(browser, { prompt: 'login' });
    const offer = await browser.go(choose(started.page, 'kiwi-b'));
    assert.equal(offer.status, 200, offer.text.slice(0, 300));
    assert.match(offer.text, /Link your account\?/);
    assert.match(offer.text, /signed in with Kanidm as <strong>gina<\/strong>/);
    const token = /name="token" value="([^"]+)"/.exec(offer.text)![1]!;
    const confirm = `${pair.local.issuer}/oauth2/federation/link/confirm`;
    // The offer belongs to this browser's session: another one cannot take it.
    const thief = pair.browser();
    await signInWithKanidm(thief);
    assert.equal((await thief.go(confirm, { method: 'POST', form: { token, answer: 'link' } })).status, 400);

    const done = await browser.go(confirm, { method: 'POST', form: { token, answer } });
    assert.equal(done.url.origin + done.url.pathname, SERVICE_CB);
    const link = await pair.federation.links.find(pair.upstream.issuer, `b-gina-${answer}`);
    if (answer === 'cancel') {
      assert.equal(done.url.searchParams.get('error'), 'access_denied');
      assert.equal(link, undefined);
      continue;
    }
    assert.equal(link?.person, gina.uuid);
    assert.equal(link?.how, 'self-service');
    const tokens = await oidc.authorizationCodeGrant(rp, done.url, { pkceCodeVerifier: started.verifier, expectedState: started.state, expectedNonce: started.nonce });
    assert.equal(tokens.claims()!.sub, gina.uuid);
    assert.deepEqual(tokens.claims()!.amr, ['fed', 'pwd']);
    // Used once.
    assert.equal((await browser.go(confirm, { method: 'POST', form: { token, answer } })).status, 400);
  }
});
