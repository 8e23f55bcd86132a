// Signing in to KiwiStack services through Kiwi ID with the real Kanidm, in
// Chromium: password + TOTP and passkeys enrolled on Kanidm's own
// credential-reset page, Kanidm's login pages, group policy, refusals. The
// services are independent openid-client RPs that trust tokens offline with
// jwt-public.pem alone (test/e2e/sample-service.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import type * as OTPAuth from 'otpauth';
import { launchTrusting } from '../e2e/browser.js';
// Kanidm 1.11 accepts a TOTP code again within its period (it checks the
// current and the previous step, without a used-code record), so the tests
// need not wait for a fresh period between sign-ins.
import { addVirtualAuthenticator, enrolPasskey, enrolPasswordAndTotp, kanidmLogin } from './harness/kanidm-ui.js';
import { serviceAt } from './harness/sample-service.js';
import { KiwiNode } from './harness/kiwi-node.js';

// Every authorization asks Kanidm whether the sign-in is still valid (no reuse window),
// so group and account changes are visible to the very next request.
// This file signs in many times from one address; the per-address limit has its own test.
const node = new KiwiNode({ name: 'signin', extraConfig: ['auth_rate_limit = 1000'], extraSections: ['[upstream_oauth2]', 'recheck_interval = "0s"'] });
const services: Record<string, { url: string; close: () => Promise<void> }> = {};
const secrets: Record<string, string> = {};
let browser: Awaited<ReturnType<typeof launchTrusting>>;
const PASSWORD = 'kiwi-correct-horse-battery-7';
let aliceTotp: OTPAuth.TOTP;

async function kanidm(...args: string[]) {
  const r = await node.kanidm(args);
  assert.equal(r.exitCode, 0, `kanidm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A reset link on the public origin (the CLI's own link names Kanidm's loopback address). */
async function resetLink(name: string): Promise<string> {
  const r = await node.kiwi(['reset-link', name]);
  assert.equal(r.exitCode, 0, r.stderr);
  const url = new URL(r.stdout.trim().split('\n')[0]!);
  assert.equal(url.origin, node.base);
  return url.href;
}

async function addService(id: string, extra: string[] = []) {
  const { service, secret } = await serviceAt(node, id, { scope: 'openid profile email groups offline_access', postLogout: true, clientArgs: extra });
  secrets[id] = secret;
  services[id] = service;
}

before(async () => {
  await node.init();
  await node.start();
  await node.loginIdmAdmin();
  await kanidm('person', 'create', 'alice', 'Alice Example');
  await kanidm('person', 'update', 'alice', '--mail', 'alice@example.test');
  await kanidm('group', 'create', 'mail_users');
  await kanidm('group', 'add-members', 'mail_users', 'alice');
  await kanidm('group', 'create', 'files_users');
  await kanidm('person', 'create', 'bob', 'Bob Example');
  // Wrong credentials soft-lock a person's credential at Kanidm for a moment,
  // so the refusals are tried by people of their own, not by alice.
  await kanidm('person', 'create', 'dave', 'Dave Example');
  await kanidm('person', 'create', 'erin', 'Erin Example');
  await addService('kiwi-mail');
  await addService('kiwi-chat');
  await addService('kiwi-files', ['--allowed-group', 'files_users']);
  browser = await launchTrusting(node.caPath);
});

after(async () => {
  await browser?.close();
  for (const s of Object.values(services)) await s.close();
  await node.close();
});

const result = async (page: Page) => (await page.locator('#result').textContent())?.trim();
const newPage = async (): Promise<{ context: BrowserContext; page: Page }> => {
  const context = await browser.browser.newContext();
  return { context, page: await context.newPage() };
};

test('password + TOTP set on Kanidm\'s reset page; sign-in from a service through Kiwi ID and Kanidm\'s login', async () => {
  const { page } = await newPage();
  aliceTotp = await enrolPasswordAndTotp(page, await resetLink('alice'), PASSWORD);
  await page.goto(`${services['kiwi-mail']!.url}/login`);
  await page.waitForURL(/\/ui\/(login|oauth2)/);
  assert.equal(new URL(page.url()).origin, node.base, 'Kanidm\'s login is on the Kiwi ID origin');
  await kanidmLogin(page, { username: 'alice', password: PASSWORD, totp: aliceTotp });
  await page.waitForURL(`${services['kiwi-mail']!.url}/`);
  assert.equal(await result(page), 'Hello alice');
  const groups = JSON.parse((await page.locator('#groups').textContent())!) as string[];
  assert.ok(groups.some((g) => g === 'mail_users' || g.startsWith('mail_users@')), JSON.stringify(groups));
  const info = await (await page.goto(`${services['kiwi-mail']!.url}/userinfo`))!.json();
  assert.equal(info.email, 'alice@example.test');
  assert.equal(info.preferred_username, 'alice');
});

/** Pages of Kanidm's login the browser was shown during `fn`. */
async function loginPagesDuring(page: Page, fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const onNav = (f: import('playwright-core').Frame) => {
    if (f === page.mainFrame() && /\/ui\/login/.test(f.url())) seen.push(f.url());
  };
  page.on('framenavigated', onNav);
  try {
    await fn();
  } finally {
    page.off('framenavigated', onNav);
  }
  return seen;
}

async function signIn(page: Page, service: string, c: Parameters<typeof kanidmLogin>[1]): Promise<void> {
  await page.goto(`${services[service]!.url}/login`);
  await page.waitForURL((u) => u.origin !== node.base || /\/ui\/(login|oauth2)/.test(u.pathname));
  if (new URL(page.url()).origin === node.base) await kanidmLogin(page, c);
  await page.waitForURL((u) => u.origin === new URL(services[service]!.url).origin);
}

test('single sign-on, a stable sub, and RP-initiated logout that ends the Kiwi ID (and Kanidm) session', async () => {
  const { page } = await newPage();
  await signIn(page, 'kiwi-mail', { username: 'alice', password: PASSWORD, totp: aliceTotp });
  assert.equal(await result(page), 'Hello alice');
  const sub1 = (await (await page.goto(`${services['kiwi-mail']!.url}/userinfo`))!.json()).sub;

  // A second service: no login page at all.
  const prompts = await loginPagesDuring(page, async () => {
    await page.goto(`${services['kiwi-chat']!.url}/login`);
    await page.waitForURL(`${services['kiwi-chat']!.url}/`);
  });
  assert.deepEqual(prompts, []);
  assert.equal(await result(page), 'Hello alice');
  const sub2 = (await (await page.goto(`${services['kiwi-chat']!.url}/userinfo`))!.json()).sub;
  assert.equal(sub2, sub1, 'the same person has the same sub at every service');

  // Logout at one service ends the session: the next sign-in asks for credentials again.
  await page.goto(`${services['kiwi-mail']!.url}/logout`);
  await page.locator('button[name="logout"]').click();
  await page.waitForURL(`${services['kiwi-mail']!.url}/bye`);
  const again = await loginPagesDuring(page, () => signIn(page, 'kiwi-chat', { username: 'alice', password: PASSWORD, totp: aliceTotp }));
  assert.ok(again.length > 0, 'signed out means signed out: Kanidm asked again');
  assert.equal(await result(page), 'Hello alice');
  const sub3 = (await (await page.goto(`${services['kiwi-chat']!.url}/userinfo`))!.json()).sub;
  assert.equal(sub3, sub1, 'sub is stable across sign-ins');
});

test('group policy: a non-member is refused (access_denied, no token); added to the group with kiwi-id kanidm, the next sign-in is admitted', async () => {
  const { page } = await newPage();
  await signIn(page, 'kiwi-files', { username: 'alice', password: PASSWORD, totp: aliceTotp });
  assert.equal(await result(page), 'denied: access_denied');
  await kanidm('group', 'add-members', 'files_users', 'alice');
  // Still signed in at Kiwi ID: no password prompt, and the new membership counts.
  const prompts = await loginPagesDuring(page, () => signIn(page, 'kiwi-files', { username: 'alice' }));
  assert.deepEqual(prompts, []);
  assert.equal(await result(page), 'Hello alice');
  const groups = JSON.parse((await page.locator('#groups').textContent())!) as string[];
  assert.ok(groups.some((g) => g === 'files_users' || g.startsWith('files_users@')), JSON.stringify(groups));
});

test('refusals: wrong password and wrong TOTP get Kanidm\'s refusal and no code; a disabled account signed in elsewhere gets access_denied', async () => {
  const attempts: Array<[string, { password: string; totpCode?: string }, string]> = [
    ['dave', { password: 'not-the-password' }, 'incorrect password'],
    ['erin', { password: PASSWORD, totpCode: '000000' }, 'incorrect totp'],
  ];
  for (const [who, wrong, reason] of attempts) {
    const { page } = await newPage();
    const totp = await enrolPasswordAndTotp(page, await resetLink(who), PASSWORD);
    const callbacks: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(`${services['kiwi-mail']!.url}/callback`)) callbacks.push(r.url());
    });
    await page.goto(`${services['kiwi-mail']!.url}/login`);
    await page.waitForURL(/\/ui\/oauth2/);
    await kanidmLogin(page, { username: who, totp, ...wrong });
    await page.getByText('Login Failed').waitFor();
    assert.match(await page.locator('body').innerText(), new RegExp(`Reason: ${reason}`, 'i'));
    assert.deepEqual(callbacks, [], 'the service got no code');
  }

  // Alice is signed in (SSO session at Kiwi ID and Kanidm) when her account is disabled.
  const { page } = await newPage();
  await signIn(page, 'kiwi-mail', { username: 'alice', password: PASSWORD, totp: aliceTotp });
  assert.equal(await result(page), 'Hello alice');
  await kanidm('person', 'validity', 'expire-at', 'alice', 'now');
  await page.goto(`${services['kiwi-chat']!.url}/login`);
  await page.waitForURL((u) => u.origin === new URL(services['kiwi-chat']!.url).origin, { timeout: 10_000 }).catch(async (e) => {
    throw new Error(`stuck at ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 300)}\n${node.tail(2000)}`, { cause: e });
  });
  assert.equal(await result(page), 'denied: access_denied');
  // And a fresh sign-in is refused by Kanidm itself.
  await page.goto(`${services['kiwi-chat']!.url}/login`);
  await page.waitForURL(/\/ui\/oauth2/, { timeout: 10_000 }).catch(async (e) => {
    throw new Error(`stuck at ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 300)}\n${node.tail(2000)}`, { cause: e });
  });
  await kanidmLogin(page, { username: 'alice', password: PASSWORD, totp: aliceTotp });
  assert.match(await page.locator('body').innerText(), /account expired/i);
  await kanidm('person', 'validity', 'expire-at', 'alice', 'never');
});

test('no secret in any log line of the run', () => {
  const log = node.out.join('');
  for (const secret of [PASSWORD, node.password('idm_admin'), node.password('admin'), fs.readFileSync(path.join(node.root, 'data/upstream-oauth2.secret'), 'utf8').trim(), ...Object.values(secrets)]) {
    assert.equal(log.includes(secret), false, 'a secret appears in the log');
  }
  assert.doesNotMatch(log, /"(refresh_token|access_token|id_token|code)":"[A-Za-z0-9_-]{20,}/);
});

test('passkeys: enrolled on Kanidm\'s reset page with a virtual authenticator, then the passkey alone signs in; another authenticator fails cleanly', async () => {
  const { context, page } = await newPage();
  const authenticator = await addVirtualAuthenticator(page);
  await enrolPasskey(page, await resetLink('bob'));
  const { credentials } = await authenticator.cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator.id });
  assert.equal(credentials.length, 1, 'one passkey stored on the authenticator');
  assert.equal(credentials[0]!.rpId, 'localhost', 'bound to Kanidm\'s domain, the public issuer host');

  const prompts = await loginPagesDuring(page, () => signIn(page, 'kiwi-mail', { username: 'bob' }));
  assert.ok(prompts.length > 0);
  assert.equal(await result(page), 'Hello bob');
  await context.close();

  // A different browser with an authenticator that holds no credential for bob.
  const other = await newPage();
  const stranger = await addVirtualAuthenticator(other.page);
  const callbacks: string[] = [];
  other.page.on('request', (r) => {
    if (r.url().startsWith(`${services['kiwi-mail']!.url}/callback`)) callbacks.push(r.url());
  });
  // Kanidm's passkey page reports a refused WebAuthn request on the console and stays put.
  const refused = new Promise<string>((resolve) => {
    other.page.on('console', (m) => {
      if (/Failed to complete passkey authentication/.test(m.text())) resolve(m.text());
    });
  });
  await other.page.goto(`${services['kiwi-mail']!.url}/login`);
  await other.page.waitForURL(/\/ui\/oauth2/);
  await kanidmLogin(other.page, { username: 'bob' });
  assert.match(await refused, /NotAllowedError/);
  assert.match(other.page.url(), /\/ui\/login/, 'still on Kanidm\'s login');
  await other.page.getByRole('button', { name: 'Use Passkey' }).waitFor();
  assert.deepEqual(callbacks, [], 'no code reached the service');
  const { credentials: none } = await stranger.cdp.send('WebAuthn.getCredentials', { authenticatorId: stranger.id });
  assert.equal(none.length, 0);
  await other.context.close();
});
