// The device authorization grant (RFC 8628) end to end on a real Kanidm:
// a CLI tool (openid-client) starts the flow; the user enters the code on
// Kiwi ID's page, is sent to Kanidm's own login on the same origin, signs in
// there with a password, comes back through the login callback (Kiwi ID
// redeems Kanidm's code over loopback) and the tool's poll gets tokens whose
// claims come from Kanidm. Nothing is scripted: KiwiNode runs `kiwi-id init`
// + `kiwi-id run` with the pinned Kanidm 1.11.1.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as oidc from 'openid-client';
import { fetch as undiciFetch } from 'undici';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { recoverAccount } from '../../wrapper/src/upstream/setup/kanidmd-tasks.js';
import { HttpBrowser, type Step } from './harness/http-browser.js';
import { KiwiNode, UPSTREAM_PREFIX } from './harness/kiwi-node.js';

const node = new KiwiNode({ name: 'device' });
let password = '';
// bob gets the wrong password (Kanidm then soft-locks him for a while; alice stays usable).
let bobPassword = '';

before(async () => {
  await node.init();
  await node.start();
  await node.loginIdmAdmin();
  for (const args of [['person', 'create', 'alice', 'Alice Example'], ['person', 'create', 'bob', 'Bob Example'], ['group', 'create', 'kiwi_admins']]) {
    const r = await node.kanidm(args);
    assert.equal(r.exitCode, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  // A password for alice through Kanidm's admin socket (the same step first boot uses for idm_admin).
  password = await recoverAccount(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'), node.upstreamConfig, 'alice');
  bobPassword = await recoverAccount(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'), node.upstreamConfig, 'bob');
  for (const args of [
    ['client', 'add', 'kiwi-cli', '--name', 'Kiwi CLI', '--public', '--grant', 'device_code', 'refresh_token'],
    ['client', 'add', 'kiwi-admin-cli', '--public', '--grant', 'device_code', '--allowed-group', 'kiwi_admins'],
  ]) {
    const r = await node.kiwi(args);
    assert.equal(r.exitCode, 0, r.stderr);
  }
});
after(() => node.close());

const rp = (clientId: string) =>
  oidc.discovery(new URL(node.base), clientId, undefined, oidc.None(), {
    [oidc.customFetch]: (url: string, init: object) => undiciFetch(url, { ...init, dispatcher: node.dispatcher }) as unknown as Promise<Response>,
  } as oidc.DiscoveryRequestOptions);

const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

/** The user at Kiwi ID's device page: enter the code, confirm; ends wherever the walk leaves off (Kanidm's login). */
async function enterCode(browser: HttpBrowser, da: oidc.DeviceAuthorizationResponse): Promise<Step> {
  const input = await browser.go(da.verification_uri);
  const confirm = await browser.go(da.verification_uri, { form: { xsrf: field(input.text, 'xsrf')!, user_code: da.user_code } });
  assert.match(confirm.text, new RegExp(da.user_code));
  return browser.go(da.verification_uri, { form: { xsrf: field(confirm.text, 'xsrf')!, user_code: da.user_code, confirm: 'yes' } });
}

/** Kanidm's own login forms (username, then password), found in the pages it serves. */
async function signInAtKanidm(browser: HttpBrowser, page: Step, username: string, pw: string): Promise<Step> {
  const action = (html: string) => new URL(/<form id="login" action="([^"]+)"/.exec(html)?.[1] ?? 'missing-form', node.base);
  const begin = await browser.go(action(page.text), { form: { username } });
  assert.match(begin.text, /name="password"/, 'Kanidm asks for the password');
  return browser.go(action(begin.text), { form: { password: pw } });
}

test('a CLI tool signs its user in: device page → Kanidm\'s login (password) → tokens with Kanidm\'s claims', async () => {
  const config = await rp('kiwi-cli');
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid profile email groups offline_access' });
  const browser = new HttpBrowser(node.dispatcher!, [node.base]);

  const atKanidm = await enterCode(browser, da);
  // The sign-in is Kanidm's, on the same origin, as Kiwi ID's OAuth2 client.
  const kanidmAuthorize = browser.visited.find((u) => u.pathname === '/ui/oauth2');
  assert.ok(kanidmAuthorize, browser.visited.map((u) => u.pathname).join(' → '));
  assert.equal(kanidmAuthorize.searchParams.get('client_id'), 'kiwi-id');
  assert.match(atKanidm.text, /name="username"/);

  const done = await signInAtKanidm(browser, atKanidm, 'alice', password);
  assert.ok(browser.visited.some((u) => u.pathname === '/oauth2/login/callback'), 'back through Kiwi ID\'s login callback');
  assert.equal(done.status, 200);
  assert.match(done.text, /Device connected/);
  assert.match(done.text, /Kiwi CLI/);

  const tokens = await oidc.pollDeviceAuthorizationGrant(config, da);
  const claims = await verify(tokens.id_token!, fs.readFileSync(path.join(node.root, 'jwt-public.pem'), 'utf8'), { issuer: node.base, audience: 'kiwi-cli' });
  assert.match(String(claims.preferred_username), /^alice(@|$)/);
  assert.equal(claims.name, 'Alice Example');
  assert.match(String(claims.sub), /^[0-9a-f-]{36}$/, 'Kanidm\'s uuid');
  assert.ok((claims.groups as string[]).some((g) => /^idm_all_persons@/.test(g)), JSON.stringify(claims.groups));
  assert.ok((await oidc.refreshTokenGrant(config, tokens.refresh_token!)).access_token);
});

test('a wrong password at Kanidm: no sign-in, the tool keeps waiting', async () => {
  const config = await rp('kiwi-cli');
  const da = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
  const browser = new HttpBrowser(node.dispatcher!, [node.base]);
  const atKanidm = await enterCode(browser, da);
  const denied = await signInAtKanidm(browser, atKanidm, 'bob', bobPassword + 'x');
  assert.match(denied.text, /Login Failed/);
  assert.doesNotMatch(denied.text, /Device connected/);
  assert.equal(browser.visited.some((u) => u.pathname === '/oauth2/login/callback'), false);
  await assert.rejects(oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: da.device_code }), (e: oidc.ResponseBodyError) => e.error === 'authorization_pending');
});

test('group policy on Kanidm\'s real groups: outside allowed_groups the tool gets access_denied, once a member it gets tokens', async () => {
  const config = await rp('kiwi-admin-cli');
  const first = await oidc.initiateDeviceAuthorization(config, { scope: 'openid groups' });
  const browser = new HttpBrowser(node.dispatcher!, [node.base]);
  await signInAtKanidm(browser, await enterCode(browser, first), 'alice', password);
  await assert.rejects(oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: first.device_code }), (e: oidc.ResponseBodyError) => e.error === 'access_denied');

  const r = await node.kanidm(['group', 'add-members', 'kiwi_admins', 'alice']);
  assert.equal(r.exitCode, 0, r.stderr);
  // The claims come from the sign-in, so a new sign-in at Kanidm picks up the membership.
  const second = await oidc.initiateDeviceAuthorization(config, { scope: 'openid groups' });
  const fresh = new HttpBrowser(node.dispatcher!, [node.base]);
  const done = await signInAtKanidm(fresh, await enterCode(fresh, second), 'alice', password);
  assert.match(done.text, /Device connected/);
  const t = await oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: second.device_code });
  const claims = await verify(t.id_token!, fs.readFileSync(path.join(node.root, 'jwt-public.pem'), 'utf8'), { issuer: node.base, audience: 'kiwi-admin-cli' });
  assert.ok((claims.groups as string[]).some((g) => /^kiwi_admins@/.test(g)), JSON.stringify(claims.groups));
});
