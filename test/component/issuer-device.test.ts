// Device authorization grant (RFC 8628) for CLI tools on KiwiStack hosts:
// the tool (openid-client) gets a user code, the user enters it on the
// issuer's own page in a browser, confirms, and signs in through the same
// login step as every other sign-in (here ScriptedLogin stands in for the
// Kanidm round trip only); the tool's poll then gets the tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { DEVICE_CODE_GRANT } from '../../wrapper/src/clients/client-record.js';
import { CookieBrowser } from './harness/cookie-browser.js';
import { form, IssuerHarness } from './harness/issuer.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { eventually } from './harness/sign-in.js';

let login!: ScriptedLogin;
const h = new IssuerHarness((self) => (login = new ScriptedLogin(self)));
// User codes that expire after 2 s.
const short = new IssuerHarness((self) => new ScriptedLogin(self), 'ES256', { ttl: { device_code_ttl: 2 } });

before(async () => {
  await Promise.all([h.start(), short.start()]);
  for (const x of [h, short]) {
    x.register({ client_id: 'kiwi-cli', client_name: 'Kiwi CLI', grant_types: [DEVICE_CODE_GRANT, 'refresh_token'], token_endpoint_auth_method: 'none', redirect_uris: [] });
    x.register({ client_id: 'kiwi-admin-cli', grant_types: [DEVICE_CODE_GRANT], token_endpoint_auth_method: 'none', redirect_uris: [], allowed_groups: ['kiwi_admins'], scopes: ['openid', 'profile', 'groups'] });
    x.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'] });
  }
});
after(async () => {
  await h.close();
  await short.close();
});

const cli = (x = h) => x.rp('kiwi-cli', oidc.None());
const hidden = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

/** What the user does in the browser: open the page, type the code, confirm. Returns the last page. */
async function enterCode(browser: CookieBrowser, verificationUri: string, userCode: string, { confirm = true } = {}) {
  const page = await browser.go(verificationUri);
  assert.equal(page.status, 200);
  const entered = await browser.go(verificationUri, { method: 'POST', body: new URLSearchParams({ xsrf: hidden(page.text, 'xsrf')!, user_code: userCode }).toString() });
  if (!hidden(entered.text, 'confirm')) return entered; // re-rendered input page (error)
  const fields: Record<string, string> = { xsrf: hidden(entered.text, 'xsrf')!, user_code: hidden(entered.text, 'user_code')! };
  if (confirm) fields.confirm = 'yes';
  else fields.abort = 'yes';
  return browser.go(verificationUri, { method: 'POST', body: new URLSearchParams(fields).toString() });
}

const poll = (config: oidc.Configuration, deviceCode: string) => oidc.genericGrantRequest(config, DEVICE_CODE_GRANT, { device_code: deviceCode });

test('discovery lists the device authorization endpoint and grant', async () => {
  const d = JSON.parse((await h.http('/.well-known/openid-configuration')).text);
  assert.equal(d.device_authorization_endpoint, `${h.issuer}/oauth2/device_authorization`);
  assert.ok(d.grant_types_supported.includes(DEVICE_CODE_GRANT));
});

test('a CLI tool signs its user in: code entered and confirmed in the browser, sign-in through the login step, tokens to the poll', async () => {
  const config = await cli();
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid profile groups offline_access' });
  assert.equal(da.verification_uri, `${h.issuer}/oauth2/activate`);
  assert.match(da.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  assert.equal(da.expires_in, 600);

  // Before the user acts the tool is told to keep waiting.
  await assert.rejects(poll(config, da.device_code), (e: oidc.ResponseBodyError) => e.error === 'authorization_pending');

  const browser = new CookieBrowser(h);
  const logins = login.started;
  const done = await enterCode(browser, da.verification_uri, da.user_code.toLowerCase().replace('-', ' '));
  assert.equal(login.started, logins + 1, 'signed in through the login method');
  assert.ok(browser.hops.includes('/oauth2/login/callback'), browser.hops.join(' → '));
  assert.match(done.text, /Device connected/);
  assert.match(done.text, /Kiwi CLI/);

  // openid-client's own polling loop (it waits the RFC's default 5 s interval first).
  const tokens = await oidc.pollDeviceAuthorizationGrant(config, da);
  const claims = await verify(tokens.id_token!, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-cli' });
  assert.equal(claims.sub, 'u-alice');
  assert.deepEqual(claims.groups, ['mail_users@idm.kiwi.test']);
  const info = await oidc.fetchUserInfo(config, tokens.access_token, 'u-alice');
  assert.equal(info.preferred_username, 'alice');
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  assert.ok(refreshed.access_token);

  // The device code works once.
  await assert.rejects(poll(config, da.device_code), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
});

test('verification_uri_complete carries the code; the user only confirms', async () => {
  const config = await cli();
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
  const browser = new CookieBrowser(h);
  // The link submits the code by itself (a self-posting form); a browser without scripts presses the button.
  const autopost = await browser.go(da.verification_uri_complete!);
  const fields = Object.fromEntries([...autopost.text.matchAll(/name="(\w+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
  assert.equal(fields.user_code, da.user_code);
  const confirmPage = await browser.go(da.verification_uri, { method: 'POST', body: new URLSearchParams(fields).toString() });
  assert.match(confirmPage.text, new RegExp(da.user_code));
  const done = await browser.go(da.verification_uri, { method: 'POST', body: new URLSearchParams({ xsrf: hidden(confirmPage.text, 'xsrf')!, user_code: da.user_code, confirm: 'yes' }).toString() });
  assert.match(done.text, /Device connected/);
  assert.ok((await poll(config, da.device_code)).access_token);
});

test('the device pages are self-contained (no external fonts, scripts or styles) and framing is refused', async () => {
  const config = await cli();
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
  const browser = new CookieBrowser(h);
  const input = await browser.go(da.verification_uri);
  const confirm = await browser.go(da.verification_uri, { method: 'POST', body: new URLSearchParams({ xsrf: hidden(input.text, 'xsrf')!, user_code: da.user_code }).toString() });
  for (const page of [input.text, confirm.text]) {
    assert.doesNotMatch(page, /@import|<link|<script[^>]+src|url\(|fonts\.googleapis/);
    assert.doesNotMatch(page, /https?:\/\/(?!localhost:)/, 'no other origin');
  }
  const raw = await h.http('/oauth2/activate');
  assert.equal(raw.headers['x-frame-options'], 'DENY');
});

test('a wrong code is refused on the page and the tool keeps waiting', async () => {
  const config = await cli();
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
  const page = await enterCode(new CookieBrowser(h), da.verification_uri, 'BCDF-GHJK');
  assert.equal(page.status, 200);
  assert.match(page.text, /not known/);
  await assert.rejects(poll(config, da.device_code), (e: oidc.ResponseBodyError) => e.error === 'authorization_pending');
});

test('cancelling on the confirm page: the tool gets access_denied', async () => {
  const config = await cli();
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
  const page = await enterCode(new CookieBrowser(h), da.verification_uri, da.user_code, { confirm: false });
  assert.match(page.text, /cancelled/);
  await assert.rejects(poll(config, da.device_code), (e: oidc.ResponseBodyError) => e.error === 'access_denied');
});

test('group policy applies to device sign-ins: a user outside allowed_groups gets access_denied at the tool', async () => {
  const config = await h.rp('kiwi-admin-cli', oidc.None());
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid groups' });
  await enterCode(new CookieBrowser(h), da.verification_uri, da.user_code);
  await assert.rejects(poll(config, da.device_code), (e: oidc.ResponseBodyError) => e.error === 'access_denied');
});

test('an expired device code: expired_token at the tool, "expired" on the page', async () => {
  const config = await cli(short);
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
  assert.equal(da.expires_in, 2);
  const until = Date.now() + da.expires_in * 1000 + 1000;
  await eventually('the device code to expire', async () => Date.now() > until);
  await assert.rejects(poll(config, da.device_code), (e: oidc.ResponseBodyError) => e.error === 'expired_token');
  const page = await enterCode(new CookieBrowser(short), da.verification_uri, da.user_code);
  assert.match(page.text, /expired/);
});

test('clients without the device grant get unauthorized_client; unknown device codes invalid_grant', async () => {
  const r = await h.http('/oauth2/device_authorization', form({ client_id: 'kiwi-mail', scope: 'openid' }, { authorization: h.basic('kiwi-mail') }));
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.text).error, 'unauthorized_client');
  const t = await h.http('/oauth2/token', form({ grant_type: DEVICE_CODE_GRANT, client_id: 'kiwi-cli', device_code: 'forged-device-code' }));
  assert.equal(t.status, 400);
  assert.equal(JSON.parse(t.text).error, 'invalid_grant');
});
