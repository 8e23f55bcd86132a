// Attacks on federated sign-in, each answered with a clean error page, no
// link made and no token for the service: a tampered or replayed callback,
// a callback opened in another browser (login CSRF), and ID tokens that are
// from another issuer (mix-up), for another audience, expired, dated in the
// future, unsigned (alg none), HMAC-signed, signed with a foreign key, or
// carrying the wrong nonce. Upstream B is a real Kiwi ID; the malformed ID
// tokens come from a scripted IdP, since no real IdP issues them on demand.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import * as oidc from 'openid-client';
import { FederatedPair } from './harness/federation.js';
import type { Page, WebBrowser } from './harness/web-browser.js';
import { RogueIdp, type RogueMode } from './fixtures/rogue-idp.js';

const rogue = new RogueIdp();
const pair = new FederatedPair({
  extraIdps: () => [{
    id: 'rogue', issuer: rogue.issuer, client_id: 'kiwi-fed', token_endpoint_auth_method: 'none', scopes: ['openid', 'email'],
    ca_file: rogue.tls.caPath, link_by_verified_email: true,
  }, {
    // Nothing listens there: an upstream that is down.
    id: 'down', issuer: 'https://localhost:1', client_id: 'kiwi-fed', token_endpoint_auth_method: 'none', display_name: 'Down IdP',
  }],
});
const SERVICE_CB = 'https://mail.kiwi.test/callback';
let rp: oidc.Configuration;
const PERSON = '00000000-0000-4000-8000-0000000000b0';

before(async () => {
  await rogue.start();
  pair.extraOrigins.push(rogue.issuer);
  pair.extraCas.push(fs.readFileSync(rogue.tls.caPath));
  await pair.start();
  pair.local.register({ client_id: 'kiwi-mail', redirect_uris: [SERVICE_CB] });
  rp = await pair.local.rp('kiwi-mail', oidc.ClientSecretBasic(pair.local.secrets['kiwi-mail']!));
  // Would match by email: only a verified email may ever link it.
  pair.directory.add({ uuid: PERSON, name: 'rita', mails: ['rita@rogue.test'] });
  pair.upstreamLogin.user = { sub: 'b-eve', preferred_username: 'eve', email: 'eve@partner.test', email_verified: true };
  await pair.federation.links.link({ issuer: pair.upstream.issuer, idp: 'kiwi-b', upstream_sub: 'b-eve', person: PERSON, how: 'admin' });
});
after(async () => {
  await pair.close();
  await rogue.close();
});

const isCallback = (u: URL) => u.pathname.startsWith('/oauth2/federation/');

async function serviceUrl(): Promise<URL> {
  return oidc.buildAuthorizationUrl(rp, {
    redirect_uri: SERVICE_CB, scope: 'openid', state: oidc.randomState(),
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256',
  });
}

function choose(page: Page, value: string): URL {
  const u = new URL(page.url);
  u.searchParams.set('login', value);
  return u;
}

/** Starts at the service, picks `idp`, and holds the browser at the upstream's redirect back to Kiwi ID. */
async function upToCallback(browser: WebBrowser, idp: string): Promise<URL> {
  const step = await browser.go(await serviceUrl());
  assert.equal(step.status, 200, 'at the sign-in step');
  const held = await browser.go(choose(step, idp), { stopAt: isCallback });
  assert.ok(isCallback(held.url), `held at the callback, not ${held.url.href}`);
  return held.url;
}

function assertNoCode(page: Page): void {
  assert.notEqual(page.url.origin + page.url.pathname, SERVICE_CB, 'the browser never reached the service');
}

async function followReturn(browser: WebBrowser, page: Page): Promise<Page> {
  const back = /<a href="([^"]+)">Return to the service<\/a>/.exec(page.text)?.[1];
  assert.ok(back, 'the page leads back to the service');
  return browser.go(new URL(back!.replace(/&#38;/g, '&'), page.url));
}

test('tampered state: refused, nothing linked, no token', async () => {
  const browser = pair.browser();
  const cb = await upToCallback(browser, 'kiwi-b');
  cb.searchParams.set('state', 'x' + cb.searchParams.get('state'));
  const page = await browser.go(cb);
  assert.equal(page.status, 400);
  assert.match(page.text, /could not be completed/);
  assertNoCode(page);
});

test('replayed callback: the first use signs in, the replay is refused', async () => {
  const browser = pair.browser();
  const cb = await upToCallback(browser, 'kiwi-b');
  const first = await browser.go(cb);
  assert.equal(first.url.origin + first.url.pathname, SERVICE_CB, 'the genuine callback works');
  const replay = await browser.go(cb);
  assert.equal(replay.status, 400);
  assertNoCode(replay);
});

test('callback opened in another browser (login CSRF): refused there, nothing offered for linking, and the state is spent', async () => {
  pair.upstreamLogin.user = { sub: 'b-mallory' };
  const attacker = pair.browser();
  const cb = await upToCallback(attacker, 'kiwi-b');
  // The victim signed in with Kanidm a moment ago: a link to the attacker's upstream account must not be offered.
  pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000000c1', name: 'victim' });
  pair.localLogin.user = { sub: '00000000-0000-4000-8000-0000000000c1', preferred_username: 'victim' };
  const victim = pair.browser();
  const signedIn = await victim.go(choose(await victim.go(await serviceUrl()), 'kanidm'));
  assert.equal(signedIn.url.origin + signedIn.url.pathname, SERVICE_CB);
  const page = await victim.go(cb);
  assert.equal(page.status, 400);
  assert.doesNotMatch(page.text, /Link your account/);
  assertNoCode(page);
  assert.ok(pair.fedLog.some((l) => l.includes('did not start this sign-in')));
  assert.equal(await pair.federation.links.find(pair.upstream.issuer, 'b-mallory'), undefined);
  assert.equal((await attacker.go(cb)).status, 400, 'spent');
  pair.upstreamLogin.user = { sub: 'b-eve', preferred_username: 'eve', email: 'eve@partner.test', email_verified: true };
});

const BAD_TOKENS: Array<[RogueMode, RegExp]> = [
  ['other-issuer', /iss/],
  ['iss-param-mixup', /iss/],
  ['wrong-aud', /aud/],
  ['expired', /exp/],
  ['iat-future', /iat/],
  ['alg-none', /alg/],
  ['hs256', /alg/],
  ['foreign-key', /signature|key/i],
  ['wrong-nonce', /nonce/],
  ['no-id-token', /id_token/],
];

for (const [mode, why] of BAD_TOKENS) {
  test(`ID token attack "${mode}": clean error page, service gets access_denied, nothing linked`, async () => {
    rogue.mode = mode;
    try {
      const browser = pair.browser();
      const cb = await upToCallback(browser, 'rogue');
      const logFrom = pair.fedLog.length;
      const page = await browser.go(cb);
      assert.equal(page.status, 400, page.text.slice(0, 200));
      assert.match(page.text, /did not succeed/);
      assert.doesNotMatch(page.text, /eyJ|stack|Error:/, 'no token or internals on the page');
      const reason = pair.fedLog.slice(logFrom).join('');
      assert.match(reason, /"result":"rejected"/);
      assert.match(reason, why);
      const back = await followReturn(browser, page);
      assert.equal(back.url.origin + back.url.pathname, SERVICE_CB);
      assert.equal(back.url.searchParams.get('error'), 'access_denied');
      assert.equal(back.url.searchParams.get('code'), null);
      assert.equal(await pair.federation.links.find(rogue.issuer, 'r-user'), undefined, 'nothing linked (email matches a person)');
    } finally {
      rogue.mode = 'honest';
    }
  });
}

test('link_by_verified_email: an unverified (or string "true") email links nothing; a verified one links the one match', async () => {
  for (const unverified of [false, 'true', undefined]) {
    rogue.user = { sub: 'r-unverified', email: 'rita@rogue.test', ...(unverified !== undefined && { email_verified: unverified }) };
    const browser = pair.browser();
    const page = await browser.go(await upToCallback(browser, 'rogue'));
    assert.equal(page.status, 403, `email_verified=${String(unverified)}`);
    assert.match(page.text, /not linked/);
    const back = await followReturn(browser, page);
    assert.equal(back.url.searchParams.get('error'), 'access_denied');
    assert.equal(await pair.federation.links.find(rogue.issuer, 'r-unverified'), undefined);
  }
  rogue.user = { sub: 'r-verified', email: 'RITA@rogue.test', email_verified: true };
  const browser = pair.browser();
  const page = await browser.go(await upToCallback(browser, 'rogue'));
  assert.equal(page.url.origin + page.url.pathname, SERVICE_CB);
  assert.ok(page.url.searchParams.get('code'));
  const link = await pair.federation.links.find(rogue.issuer, 'r-verified');
  assert.equal(link?.person, PERSON);
  assert.equal(link?.how, 'verified-email');
});

test('link_by_verified_email never picks one of several persons with the same email', async () => {
  pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000000b1', name: 'rita2', mails: ['shared@rogue.test'] });
  pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000000b2', name: 'rita3', mails: ['shared@rogue.test'] });
  rogue.user = { sub: 'r-shared', email: 'shared@rogue.test', email_verified: true };
  const browser = pair.browser();
  const page = await browser.go(await upToCallback(browser, 'rogue'));
  assert.equal(page.status, 403);
  assert.equal(await pair.federation.links.find(rogue.issuer, 'r-shared'), undefined);
});

test('an IdP without link_by_verified_email never links by email, even a verified one', async () => {
  pair.upstreamLogin.user = { sub: 'b-new', email: 'rita@rogue.test', email_verified: true };
  const browser = pair.browser();
  const page = await browser.go(await upToCallback(browser, 'kiwi-b'));
  assert.equal(page.status, 403);
  assert.match(page.text, /Partner Kiwi ID account is not linked/);
  assert.equal(await pair.federation.links.find(pair.upstream.issuer, 'b-new'), undefined);
});

test('an upstream that cannot be reached: a 503 page naming it, nothing else happens', async () => {
  const browser = pair.browser();
  const step = await browser.go(await serviceUrl());
  const page = await browser.go(choose(step, 'down'));
  assert.equal(page.status, 503);
  assert.match(page.text, /Down IdP cannot be reached right now/);
  assert.match(await pair.metric('kiwi_federation_signins_total'), /idp="down",result="unavailable"} 1/);
});

test('sign-in results are counted per IdP', async () => {
  const m = await pair.metric('kiwi_federation_signins_total');
  assert.match(m, /idp="kiwi-b",result="invalid_state"} [1-9]/);
  assert.match(m, /idp="rogue",result="rejected"} 10/);
  assert.match(m, /idp="rogue",result="not_linked"} [1-9]/);
  assert.match(m, /idp="kiwi-b",result="success"} 1/);
});
