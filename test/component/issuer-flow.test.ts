// The issuer's browser flow end to end over HTTP, driven by a real RP library
// (openid-client) and a cookie jar: authorize → login interaction → login
// callback → consent (group policy) → code → tokens → userinfo → refresh →
// logout, plus SSO to a second service.
//
// Only the Kanidm round trip is replaced: ScriptedLogin sends the "browser"
// straight back to the login callback with claims the test chooses. The real
// KanidmLogin's redirect is covered in issuer.test.ts; the round trip through
// a real Kanidm is test/integration's (signin.test.ts, device-flow.test.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { IssuerHarness } from './harness/issuer.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { authorize } from './harness/sign-in.js';
import { CookieBrowser } from './harness/cookie-browser.js';

let login!: ScriptedLogin;
const h = new IssuerHarness((self) => (login = new ScriptedLogin(self)));
before(async () => {
  await h.start();
  h.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'], post_logout_redirect_uris: ['https://mail.kiwi.test/bye'] });
  h.register({ client_id: 'kiwi-chat', redirect_uris: ['https://chat.kiwi.test/cb'], token_endpoint_auth_method: 'none', scopes: ['openid', 'profile', 'groups'] });
  h.register({ client_id: 'kiwi-files', redirect_uris: ['https://files.kiwi.test/cb'], allowed_groups: ['files_users'] });
});
after(() => h.close());

test('full flow for a confidential service: login, consent, tokens, userinfo, refresh, logout', async () => {
  const config = await h.rp('kiwi-mail', oidc.ClientSecretBasic(h.secrets['kiwi-mail']));
  const browser = new CookieBrowser(h);
  const { landed, verifier, state, nonce } = await authorize(browser, config, { redirect_uri: 'https://mail.kiwi.test/callback' });
  assert.equal(landed.origin + landed.pathname, 'https://mail.kiwi.test/callback');
  assert.ok(browser.hops.includes('/oauth2/login/callback'), `went through the login step: ${browser.hops.join(' → ')}`);

  const tokens = await oidc.authorizationCodeGrant(config, landed, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const claims = await verify(tokens.id_token!, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-mail' });
  assert.equal(claims.sub, 'u-alice');
  assert.equal(claims.preferred_username, 'alice');
  assert.deepEqual(claims.groups, ['mail_users@idm.kiwi.test']);

  const info = await oidc.fetchUserInfo(config, tokens.access_token, 'u-alice');
  assert.equal(info.email, 'alice@kiwi.test');

  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
  await verify(refreshed.id_token!, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-mail' });

  // RP-initiated logout: confirm page, then back to the registered post-logout URI.
  const end = oidc.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token!, post_logout_redirect_uri: 'https://mail.kiwi.test/bye', state: 'bye1' });
  const page = await browser.go(end.href);
  assert.equal(page.status, 200);
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.text)?.[1];
  const action = /action="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(xsrf && action, 'logout confirmation form');
  const done = await browser.go(action!, { method: 'POST', body: new URLSearchParams({ xsrf: xsrf!, logout: 'yes' }).toString() });
  assert.equal(done.url.origin + done.url.pathname, 'https://mail.kiwi.test/bye');
  assert.equal(done.url.searchParams.get('state'), 'bye1');

  // After logout the next authorization needs a new login.
  const before = login.started;
  await authorize(browser, config, { redirect_uri: 'https://mail.kiwi.test/callback' });
  assert.equal(login.started, before + 1);
});

test('single sign-on: a second service gets a code without a second login', async () => {
  const browser = new CookieBrowser(h);
  const mail = await h.rp('kiwi-mail', oidc.ClientSecretBasic(h.secrets['kiwi-mail']));
  await authorize(browser, mail, { redirect_uri: 'https://mail.kiwi.test/callback' });
  const logins = login.started;
  const chat = await h.rp('kiwi-chat', oidc.None());
  const { landed, verifier, state, nonce } = await authorize(browser, chat, { redirect_uri: 'https://chat.kiwi.test/cb', scope: 'openid profile groups' });
  assert.equal(login.started, logins, 'no second login');
  assert.ok(landed.searchParams.get('code'));
  const tokens = await oidc.authorizationCodeGrant(chat, landed, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const claims = await verify(tokens.id_token!, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-chat' });
  assert.equal(claims.sub, 'u-alice');
});

test('group policy: a user outside allowed_groups gets access_denied at the service, and no code', async () => {
  const browser = new CookieBrowser(h);
  const files = await h.rp('kiwi-files', oidc.ClientSecretBasic(h.secrets['kiwi-files']));
  const { landed, state } = await authorize(browser, files, { redirect_uri: 'https://files.kiwi.test/cb', scope: 'openid groups' });
  assert.equal(landed.origin + landed.pathname, 'https://files.kiwi.test/cb');
  assert.equal(landed.searchParams.get('error'), 'access_denied');
  assert.equal(landed.searchParams.get('state'), state);
  assert.equal(landed.searchParams.get('code'), null);

  // A member (group matched by name, as Kanidm returns SPNs) is let in.
  login.user = { ...login.user, sub: 'u-bob', preferred_username: 'bob', groups: ['files_users@idm.kiwi.test'] };
  try {
    const ok = await authorize(new CookieBrowser(h), files, { redirect_uri: 'https://files.kiwi.test/cb', scope: 'openid groups' });
    assert.ok(ok.landed.searchParams.get('code'), ok.landed.href);
  } finally {
    login.user = { ...login.user, sub: 'u-alice', preferred_username: 'alice', groups: ['mail_users@idm.kiwi.test'] };
  }
});

test('the login callback works once: replaying it is refused', async () => {
  const browser = new CookieBrowser(h);
  const mail = await h.rp('kiwi-mail', oidc.ClientSecretBasic(h.secrets['kiwi-mail']));
  await authorize(browser, mail, { redirect_uri: 'https://mail.kiwi.test/callback' });
  const callback = browser.urls.find((u) => u.pathname === '/oauth2/login/callback');
  assert.ok(callback, 'login callback visited');
  const replay = await browser.go(callback.href);
  assert.equal(replay.status, 400);
  assert.match(replay.text, /could not be completed/);
});

test('the flow\'s log holds no codes, tokens or secrets', () => {
  const all = h.logLines.join('');
  for (const s of Object.values(h.secrets)) assert.equal(all.includes(s), false);
  assert.doesNotMatch(all, /"code":"(?!\[redacted\])/);
  assert.doesNotMatch(all, /eyJ[\w-]{10,}\.[\w-]{10,}\./, 'a JWT in the log');
});
