// Federation against real peers, in Chromium: the local Kiwi ID is a whole
// node (`kiwi-id init` + `kiwi-id run` on its own real Kanidm); upstream A is
// a second, real Kanidm (own port, database and host name) where the local
// Kiwi ID is registered as an OAuth2 client; upstream C is the same Kanidm
// configured through endpoint overrides and userinfo only (plain OAuth2).
// A sample service on openid-client signs in at the local Kiwi ID.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { Agent, request } from 'undici';
import { launchTrusting } from '../e2e/browser.js';
import { KanidmPeer } from './harness/kanidm-peer.js';
import { setPassword } from './harness/kanidm-people.js';
import { serviceAt } from './harness/sample-service.js';
import { KiwiNode } from './harness/kiwi-node.js';

const peer = new KanidmPeer();
let local: KiwiNode;
let service: { url: string; close: () => Promise<void> };
let browser: Awaited<ReturnType<typeof launchTrusting>>;
const PW = 'correct horse battery staple 7';
const people: Record<string, string> = {};

const cmd = async (node: KiwiNode, args: string[]) => {
  const r = await node.kiwi(args);
  assert.equal(r.exitCode, 0, `kiwi-id ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const localKanidm = async (args: string[]) => {
  const r = await local.kanidm(args);
  if (r.exitCode !== 0) throw new Error(`kanidm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

before(async () => {
  await peer.start();
  const secret = await peer.oauth2Client('kiwi-fed', peer.origin, [], ['openid', 'profile', 'email', 'groups']);
  const secretFile = path.join(peer.root, 'kanidm-a.secret');
  fs.writeFileSync(secretFile, secret + '\n', { mode: 0o600 });
  const a = `${peer.origin}/oauth2/openid/kiwi-fed`;
  local = new KiwiNode({ name: 'fed-local', extraSections: [
    '[federation]',
    `ca_file = ${JSON.stringify(peer.caPath)}`,
    '[[federation.upstream_idps]]',
    'id = "kanidm-a"', `issuer = "${a}"`, 'client_id = "kiwi-fed"', 'token_endpoint_auth_method = "client_secret_basic"',
    `client_secret_file = ${JSON.stringify(secretFile)}`, 'scopes = ["openid", "profile", "email", "groups"]',
    'default_groups = ["partners_a"]', 'display_name = "Kanidm A"', 'link_by_verified_email = true',
    '[[federation.upstream_idps]]',
    'id = "kanidm-c"', `issuer = "${peer.origin}"`, 'client_id = "kiwi-fed"', 'token_endpoint_auth_method = "client_secret_post"',
    `client_secret_file = ${JSON.stringify(secretFile)}`, 'scopes = ["profile", "email"]', 'display_name = "Kanidm A (plain OAuth2)"',
    `authorization_endpoint = "${peer.origin}/ui/oauth2"`, `token_endpoint = "${peer.origin}/oauth2/token"`,
    `userinfo_endpoint = "${a}/userinfo"`, 'subject_claim = "sub"', 'default_amr = ["pwd"]',
  ] });
  await local.writeConfig();
  for (const id of ['kanidm-a', 'kanidm-c']) await peer.kanidm('system', 'oauth2', 'add-redirect-url', 'kiwi-fed', `${local.base}/oauth2/federation/${id}/callback`);
  await local.init();
  await local.start();
  await local.loginIdmAdmin();
  await localKanidm(['group', 'account-policy', 'credential-type-minimum', 'idm_all_persons', 'any']);
  await localKanidm(['group', 'create', 'mail_users']);
  for (const name of ['alice', 'bob', 'carol']) {
    await localKanidm(['person', 'create', name, `${name} local`]);
    await localKanidm(['group', 'add-members', 'mail_users', name]);
  }
  await localKanidm(['person', 'update', 'carol', '--mail', 'carol@kiwi.test']);
  const toLocalKanidm = new Agent({ connect: { ca: fs.readFileSync(local.upstreamCaPath) } });
  await setPassword(localKanidm, local.upstreamUrl, toLocalKanidm, 'bob', PW).finally(() => toLocalKanidm.close());
  people['alice-a'] = await peer.person('alice_a', PW);
  people['bob-a'] = await peer.person('bob_a', PW);
  people['carol-a'] = await peer.person('carol_a', PW, 'carol@kiwi.test');

  ({ service } = await serviceAt(local, 'kiwi-mail'));
  browser = await launchTrusting([local.caPath, peer.caPath]);
});

after(async () => {
  await browser?.close();
  await service?.close();
  await local?.close();
  await peer.close();
});

const newPage = () => browser.newPage();

/** Kanidm's own login page (either Kanidm): user name, then password. */
async function kanidmLogin(page: Page, user: string): Promise<void> {
  await page.locator('input[name=username]').fill(user);
  await page.keyboard.press('Enter');
  await page.locator('input[type=password]').fill(PW);
  await page.keyboard.press('Enter');
}

/** Kanidm asks once per client whether to share the data; the test person agrees. */
async function consentIfAsked(page: Page, host: string): Promise<void> {
  await page.waitForURL((u) => u.hostname !== host || /consent|resume/.test(u.pathname));
  if (new URL(page.url()).hostname === host) await page.getByRole('button', { name: /Proceed/i }).click();
}

const at = async (page: Page, id: string) => (await page.locator(`#${id}`).textContent())?.trim();

/** From the service, through the sign-in step's `button`, to the signed-in service page. */
async function signInAt(page: Page, button: string, user: string): Promise<void> {
  await page.goto(`${service.url}/login`);
  await page.getByRole('button', { name: button, exact: true }).click();
  await page.waitForURL((u) => u.origin === peer.origin);
  await kanidmLogin(page, user);
  await consentIfAsked(page, peer.host);
}

test('the reader account: created by init, a read-only token kept 0600; it can read persons and cannot change them', async () => {
  const tokenFile = path.join(local.root, 'data/kanidm-reader.token');
  assert.equal(fs.statSync(tokenFile).mode & 0o777, 0o600);
  const token = fs.readFileSync(tokenFile, 'utf8').trim();
  const dispatcher = new Agent({ connect: { ca: fs.readFileSync(local.upstreamCaPath) } });
  try {
    const read = await request(`${local.upstreamUrl}/scim/v1/Person/alice?attributes=name,memberof`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
    assert.equal(read.statusCode, 200);
    assert.match(await read.body.text(), /mail_users@localhost/);
    const write = await request(`${local.upstreamUrl}/v1/person/alice/_attr/displayname`, {
      dispatcher, method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(['Mallory']),
    });
    assert.equal(write.statusCode, 403, await write.body.text());
    const make = await request(`${local.upstreamUrl}/v1/person`, {
      dispatcher, method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ attrs: { class: ['person', 'account'], name: ['mallory'], displayname: ['M'] } }),
    });
    assert.equal(make.statusCode, 403, await make.body.text());
  } finally {
    await dispatcher.close();
  }
});

test('upstream A, admin link: sign in at the other Kanidm, back as the local person with default_groups and amr fed', async () => {
  const linked = await cmd(local, ['federation', 'link', 'kanidm-a', people['alice-a']!, 'alice']);
  assert.match(linked, /linked kanidm-a ".*" to alice \(/);
  const page = await newPage();
  await signInAt(page, 'Kanidm A', 'alice_a');
  await page.waitForURL(`${service.url}/`);
  assert.equal(await at(page, 'result'), 'Hello alice');
  const groups = JSON.parse((await at(page, 'groups'))!) as string[];
  assert.ok(groups.includes('mail_users@localhost'), `Kanidm groups of the local person: ${groups}`);
  assert.ok(groups.includes('partners_a'));
  assert.deepEqual(JSON.parse((await at(page, 'amr'))!), ['fed']);
  const list = await cmd(local, ['federation', 'list', '--json']);
  const row = list.trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.upstream_sub === people['alice-a']);
  assert.equal(row.how, 'admin');
  assert.ok(row.last_used_at >= row.created_at);
});

test('upstream A, self-service link: signed in with the local Kanidm, then at upstream A on the Linked accounts page', async () => {
  const page = await newPage();
  await page.goto(`${service.url}/login`);
  await page.getByRole('button', { name: 'Kanidm (password or passkey)' }).click();
  await kanidmLogin(page, 'bob');
  await page.waitForURL(`${service.url}/`);
  assert.equal(await at(page, 'result'), 'Hello bob');
  await page.goto(`${local.base}/oauth2/federation/link`);
  await page.getByRole('button', { name: 'Link Kanidm A', exact: true }).click();
  await kanidmLogin(page, 'bob_a');
  await consentIfAsked(page, peer.host);
  await page.getByRole('heading', { name: 'Account linked' }).waitFor();

  const other = await newPage();
  await signInAt(other, 'Kanidm A', 'bob_a');
  await other.waitForURL(`${service.url}/`);
  assert.equal(await at(other, 'result'), 'Hello bob');
  assert.deepEqual(JSON.parse((await at(other, 'amr'))!), ['fed']);
});

test('upstream A, link_by_verified_email: Kanidm asserts the verified email that exactly one local person has', async () => {
  const page = await newPage();
  await signInAt(page, 'Kanidm A', 'carol_a');
  await page.waitForURL(`${service.url}/`);
  assert.equal(await at(page, 'result'), 'Hello carol');
  const list = (await cmd(local, ['federation', 'list', '--json'])).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(list.find((l) => l.upstream_sub === people['carol-a'])?.how, 'verified-email');
});

test('upstream C (same Kanidm, endpoint overrides, userinfo only): plain OAuth2 sign-in of a linked person', async () => {
  await cmd(local, ['federation', 'link', 'kanidm-c', people['alice-a']!, 'alice']);
  const page = await newPage();
  await signInAt(page, 'Kanidm A (plain OAuth2)', 'alice_a');
  await page.waitForURL(`${service.url}/`);
  assert.equal(await at(page, 'result'), 'Hello alice');
  assert.deepEqual(JSON.parse((await at(page, 'amr'))!), ['fed', 'pwd']);
});

test('an unlinked upstream identity: a clear page, and the service hears access_denied', async () => {
  await peer.person('dave_a', PW);
  const page = await newPage();
  await signInAt(page, 'Kanidm A', 'dave_a');
  await page.getByRole('heading', { name: 'Account not linked' }).waitFor();
  await page.getByRole('link', { name: 'Return to the service' }).click();
  await page.waitForURL((u) => u.pathname === '/callback');
  assert.equal(await at(page, 'result'), 'denied: access_denied');
});

test('attacks with real Kanidm A: its callback replayed, with a tampered state, or delivered to another IdP\'s callback (mix-up)', async () => {
  // Browsers cannot hold a redirect (Playwright does not intercept them), so the genuine callback is used
  // first; that a callback opened in another browser before its first use is refused is shown with a
  // Kiwi ID upstream in test/component/federation-attacks.test.ts.
  const page = await newPage();
  const isCallback = (u: URL) => u.origin === local.base && u.pathname === '/oauth2/federation/kanidm-a/callback';
  let seen: URL | undefined;
  page.on('request', (r) => {
    if (isCallback(new URL(r.url()))) seen = new URL(r.url());
  });
  await signInAt(page, 'Kanidm A', 'alice_a');
  await page.waitForURL(`${service.url}/`);
  assert.equal(await at(page, 'result'), 'Hello alice');
  assert.ok(seen?.searchParams.get('code'));
  const status = async (p: Page, url: URL) => (await p.goto(url.href))?.status();

  assert.equal(await status(page, seen!), 400, 'replayed in the same browser');
  assert.equal(await status(await newPage(), seen!), 400, 'replayed in another browser');
  const tampered = new URL(seen!);
  tampered.searchParams.set('state', 'x' + seen!.searchParams.get('state'));
  assert.equal(await status(page, tampered), 400);
  const mixup = new URL(seen!);
  mixup.pathname = '/oauth2/federation/kanidm-c/callback';
  assert.equal(await status(page, mixup), 400);
  assert.match(await page.content(), /could not be completed/);
});

test('a linked person whose Kanidm account has expired is refused: the service hears access_denied', async () => {
  await localKanidm(['person', 'validity', 'expire-at', 'alice', 'epoch']);
  try {
    const page = await newPage();
    await signInAt(page, 'Kanidm A', 'alice_a');
    await page.waitForURL((u) => u.origin === service.url && u.pathname === '/callback');
    assert.equal(await at(page, 'result'), 'denied: access_denied');
  } finally {
    await localKanidm(['person', 'validity', 'expire-at', 'alice', 'never']);
  }
});

test('sign-ins are counted by IdP and result', async () => {
  const m = (await local.get('/metrics')).text;
  assert.match(m, /kiwi_federation_signins_total\{idp="kanidm-a",result="success"\} [3-9]/);
  assert.match(m, /kiwi_federation_signins_total\{idp="kanidm-a",result="invalid_state"\} [3-9]/);
  assert.match(m, /kiwi_federation_signins_total\{idp="kanidm-c",result="success"\} 1/);
  assert.match(m, /kiwi_federation_signins_total\{idp="kanidm-a",result="not_linked"\} 1/);
  assert.match(m, /kiwi_federation_signins_total\{idp="kanidm-a",result="account_invalid"\} 1/);
});
