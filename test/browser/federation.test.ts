// Federated sign-in in a real browser (headless Debian chromium, both test
// CAs trusted through NSS): a sample service on openid-client signs in at the
// local Kiwi ID, the user presses the upstream's button on the sign-in step,
// signs in at upstream B (another real Kiwi ID, on another host name so the
// browser keeps its cookies apart) and comes back. Real cookies (SameSite,
// Secure, paths), real redirects; the Kanidm steps are the scripted ones of
// harness/federation.ts. With real Kanidm peers: test/integration.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Page } from 'playwright-core';
import { FederatedPair } from '../component/harness/federation.js';
import { launchTrusting } from '../e2e/browser.js';
import { freePort } from '../e2e/net.js';
import { startSampleService } from '../e2e/sample-service.js';

const pair = new FederatedPair({ idpB: { default_amr: ['pwd'] } });
let service: { url: string; close: () => Promise<void> };
let browser: Awaited<ReturnType<typeof launchTrusting>>;
const ALICE = '00000000-0000-4000-8000-0000000a11ce';

before(async () => {
  await pair.start();
  const port = await freePort();
  pair.local.register({ client_id: 'kiwi-mail', redirect_uris: [`https://localhost:${port}/callback`] });
  service = await startSampleService({
    issuer: pair.local.issuer, clientId: 'kiwi-mail', clientSecret: pair.local.secrets['kiwi-mail'], port,
    publicKeyPem: pair.local.key.publicPem, scope: 'openid profile email groups',
    tls: { cert: fs.readFileSync(pair.local.tls.certPath), key: fs.readFileSync(pair.local.tls.keyPath) },
    ca: fs.readFileSync(pair.local.tls.caPath),
  });
  pair.directory.add({ uuid: ALICE, name: 'alice', groups: ['mail_users@idm.kiwi.test'] });
  browser = await launchTrusting([pair.local.tls.caPath, pair.upstream.tls.caPath]);
});

after(async () => {
  await browser?.close();
  await service?.close();
  await pair.close();
});

const newPage = () => browser.newPage();

const result = async (page: Page) => (await page.locator('#result').textContent())?.trim();

test('sign in with the upstream\'s button: back at the service as the linked person', async () => {
  await pair.federation.links.link({ issuer: pair.upstream.issuer, idp: 'kiwi-b', upstream_sub: 'b-alice', person: ALICE, how: 'admin' });
  pair.upstreamLogin.user = { sub: 'b-alice', preferred_username: 'alice.b' };
  const page = await newPage();
  await page.goto(`${service.url}/login`);
  await page.getByRole('button', { name: 'Partner Kiwi ID' }).click();
  await page.waitForURL(`${service.url}/`);
  assert.equal(await result(page), 'Hello alice');
  assert.equal(await page.locator('#groups').textContent(), '["mail_users@idm.kiwi.test","partners"]');
});

test('an unlinked upstream account: the page says so, and the service hears access_denied', async () => {
  pair.upstreamLogin.user = { sub: 'b-unknown' };
  const page = await newPage();
  await page.goto(`${service.url}/login`);
  await page.getByRole('button', { name: 'Partner Kiwi ID' }).click();
  await page.getByRole('heading', { name: 'Account not linked' }).waitFor();
  await page.getByRole('link', { name: 'Return to the service' }).click();
  await page.waitForURL((u) => u.pathname === '/callback');
  assert.equal(await result(page), 'denied: access_denied');
});

test('self-service link in the browser: Kanidm sign-in, then the upstream on the Linked accounts page', async () => {
  const carol = pair.directory.add({ uuid: '00000000-0000-4000-8000-0000000ca201', name: 'carol' });
  pair.localLogin.user = { sub: carol.uuid, preferred_username: 'carol' };
  pair.upstreamLogin.user = { sub: 'b-carol' };
  const page = await newPage();
  await page.goto(`${service.url}/login`);
  await page.getByRole('button', { name: 'Kanidm (password or passkey)' }).click();
  await page.waitForURL(`${service.url}/`);
  await page.goto(`${pair.local.issuer}/oauth2/federation/link`);
  await page.getByRole('button', { name: 'Link Partner Kiwi ID' }).click();
  await page.getByRole('heading', { name: 'Account linked' }).waitFor();
  assert.equal((await pair.federation.links.find(pair.upstream.issuer, 'b-carol'))?.person, carol.uuid);

  const other = await newPage();
  await other.goto(`${service.url}/login`);
  await other.getByRole('button', { name: 'Partner Kiwi ID' }).click();
  await other.waitForURL(`${service.url}/`);
  assert.equal(await result(other), 'Hello carol');
});
