// Single sign-on in a real browser (headless Debian chromium) across sample
// services built on openid-client: login, SSO to a second service, group
// denial, userinfo, refresh and logout, with the issuer's real cookies and
// redirects. The Kanidm round trip of the login is the scripted step (see
// test/component/harness/scripted-login.ts); with the pinned Kanidm, the same
// sample service is driven through Kanidm's login in test/integration.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import type { Page } from 'playwright-core';
import { IssuerHarness } from '../component/harness/issuer.js';
import { ScriptedLogin } from '../component/harness/scripted-login.js';
import { localCertificate } from '../component/harness/certs.js';
import { closeAll } from '../component/harness/cleanup.js';
import { launchTrusting } from '../e2e/browser.js';
import { freePort } from '../e2e/net.js';
import { startSampleService } from '../e2e/sample-service.js';

let login!: ScriptedLogin;
const h = new IssuerHarness((self) => (login = new ScriptedLogin(self)));
const services: Record<string, { url: string; close: () => Promise<void> }> = {};
let browser: Awaited<ReturnType<typeof launchTrusting>>;
let page: Page;

before(async () => {
  await h.start();
  const ports = { mail: await freePort(), chat: await freePort(), files: await freePort() };
  const cb = (p: number) => `https://localhost:${p}/callback`;
  const bye = (p: number) => `https://localhost:${p}/bye`;
  h.register({ client_id: 'kiwi-mail', redirect_uris: [cb(ports.mail)], post_logout_redirect_uris: [bye(ports.mail)] });
  h.register({ client_id: 'kiwi-chat', redirect_uris: [cb(ports.chat)], post_logout_redirect_uris: [bye(ports.chat)], token_endpoint_auth_method: 'none' });
  h.register({ client_id: 'kiwi-files', redirect_uris: [cb(ports.files)], allowed_groups: ['files_users'] });
  const tls = { cert: fs.readFileSync(h.tls.certPath), key: fs.readFileSync(h.tls.keyPath) };
  const common = { issuer: h.issuer, publicKeyPem: h.key.publicPem, tls, ca: fs.readFileSync(h.tls.caPath), scope: 'openid profile email groups offline_access' };
  services.mail = await startSampleService({ ...common, clientId: 'kiwi-mail', clientSecret: h.secrets['kiwi-mail'], port: ports.mail });
  services.chat = await startSampleService({ ...common, clientId: 'kiwi-chat', port: ports.chat });
  services.files = await startSampleService({ ...common, clientId: 'kiwi-files', clientSecret: h.secrets['kiwi-files'], port: ports.files, scope: 'openid groups' });
  browser = await launchTrusting(h.tls.caPath);
  page = await browser.newPage();
});

after(() =>
  closeAll(
    () => browser?.close(),
    ...Object.values(services).map((s) => () => s.close()),
    () => h.close(),
  ),
);

const result = async () => (await page.locator('#result').textContent())?.trim();

test('the browser trusts the test CA and nothing else', async () => {
  const stranger = localCertificate(h.root, 'stranger');
  const server = https.createServer({ cert: fs.readFileSync(stranger.certPath), key: fs.readFileSync(stranger.keyPath) }, (_q, s) => s.end('hi'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as import('node:net').AddressInfo).port;
    // Its own page: Chromium's error page navigation would otherwise race the next test's.
    const probe = await browser.newPage();
    await assert.rejects(probe.goto(`https://localhost:${port}/`), /ERR_CERT_AUTHORITY_INVALID/);
    const ok = await (await browser.newPage()).goto(`${h.issuer}/.well-known/openid-configuration`);
    assert.equal(ok?.status(), 200);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('sign in to a service: id_token verified offline by the service, userinfo, refresh', async () => {
  await page.goto(`${services.mail!.url}/login`);
  assert.equal(await result(), 'Hello alice');
  assert.equal(await page.locator('#groups').textContent(), '["mail_users@idm.kiwi.test"]');
  const info = await page.goto(`${services.mail!.url}/userinfo`);
  assert.equal((await info!.json()).email, 'alice@kiwi.test');
  await page.goto(`${services.mail!.url}/refresh`);
  assert.equal(await result(), 'refreshed alice');
});

test('single sign-on: the second service signs the user in without another login', async () => {
  const logins = login.started;
  await page.goto(`${services.chat!.url}/login`);
  assert.equal(await result(), 'Hello alice');
  assert.equal(login.started, logins);
});

test('a service restricted to a group the user lacks answers access_denied', async () => {
  await page.goto(`${services.files!.url}/login`);
  assert.equal(await result(), 'denied: access_denied');
});

test('logout at one service ends the Kiwi ID session: the next sign-in logs in again', async () => {
  await page.goto(`${services.mail!.url}/logout`);
  // The issuer's confirmation page (RP-initiated logout); the user confirms.
  assert.match(await page.locator('h1').textContent() ?? '', /^Sign out of localhost:\d+\?$/);
  await page.locator('button[name="logout"]').click();
  await page.waitForURL(`${services.mail!.url}/bye`);
  assert.equal(await result(), 'Signed out');
  const logins = login.started;
  await page.goto(`${services.mail!.url}/login`);
  assert.equal(await result(), 'Hello alice');
  assert.equal(login.started, logins + 1);
});
