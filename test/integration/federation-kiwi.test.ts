// Upstream B is another whole Kiwi ID node (its own real Kanidm, keys, host
// name), where the local Kiwi ID is registered as a private_key_jwt client:
// in Chromium a user signs in at B's Kanidm and comes back to a service of
// the local node as the linked local person. B is also the trusted issuer of
// a JWT-bearer assertion: a JWT access token B issues for its user with the
// local issuer as audience buys tokens for the linked person, once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import * as oidc from 'openid-client';
import type { Page } from 'playwright-core';
import { Agent, fetch as undiciFetch } from 'undici';
import { addClient } from '../../wrapper/src/clients/client-list.js';
import { updateClients } from '../../wrapper/src/clients/clients-file.js';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { loadClientAssertionKey } from '../../wrapper/src/federation/client-key.js';
import { launchTrusting } from '../e2e/browser.js';
import { freePort } from '../e2e/net.js';
import { peerHostName } from './harness/kanidm-peer.js';
import { setPassword } from './harness/kanidm-people.js';
import { serviceAt } from './harness/sample-service.js';
import { KiwiNode } from './harness/kiwi-node.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const PW = 'correct horse battery staple 9';
let b: KiwiNode;
let local: KiwiNode;
let service: { url: string; close: () => Promise<void> };
let browser: Awaited<ReturnType<typeof launchTrusting>>;
let erinAtB = '';
let frank = '';
let keyFile = '';

const kiwi = async (node: KiwiNode, args: string[]) => {
  const r = await node.kiwi(args);
  assert.equal(r.exitCode, 0, `kiwi-id ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const kanidm = (node: KiwiNode) => async (args: string[]) => {
  const r = await node.kanidm(args);
  if (r.exitCode !== 0) throw new Error(`kanidm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const uuidOf = async (node: KiwiNode, name: string) => {
  const out = await kanidm(node)(['person', 'get', name, '-o', 'json']);
  return (JSON.parse(out.trim().split('\n').filter((l) => l.startsWith('{')).pop()!) as { attrs: { uuid: string[] } }).attrs.uuid[0]!;
};

before(async () => {
  b = new KiwiNode({ name: 'fed-b', publicHost: await peerHostName() });
  await b.init();
  await b.start();
  await b.loginIdmAdmin();
  await kanidm(b)(['group', 'account-policy', 'credential-type-minimum', 'idm_all_persons', 'any']);
  await kanidm(b)(['person', 'create', 'erin', 'Erin at B']);
  const toB = new Agent({ connect: { ca: fs.readFileSync(b.upstreamCaPath) } });
  await setPassword(kanidm(b), b.upstreamUrl, toB, 'erin', PW).finally(() => toB.close());
  erinAtB = await uuidOf(b, 'erin');

  // The local node's client key at B (private_key_jwt).
  const keyDir = fs.mkdtempSync(path.join(b.root, 'local-key-'));
  keyFile = path.join(keyDir, 'upstream-b.pem');
  fs.writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  local = new KiwiNode({
    name: 'fed-local-b',
    extraSections: [
      '[[federation.upstream_idps]]',
      'id = "kiwi-b"', `issuer = "${b.base}"`, 'client_id = "kiwi-local"', `private_key_path = ${JSON.stringify(keyFile)}`,
      'scopes = ["openid", "profile", "email", "groups"]', 'display_name = "Partner Kiwi ID"', 'default_groups = ["partners_b"]',
      `ca_file = ${JSON.stringify(b.caPath)}`,
    ],
  });
  await local.writeConfig();
  // Registered at B the way its operator would: the public JWKS `kiwi-id federation jwks` prints, our callback.
  const jwks = JSON.parse(await kiwi(local, ['federation', 'jwks', 'kiwi-b']));
  assert.deepEqual(jwks.keys[0].kid, (await loadClientAssertionKey(keyFile)).kid);
  updateClients(path.join(b.root, 'data/clients.toml'), (list) => ({
    clients: addClient(list, {
      client_id: 'kiwi-local', client_name: 'Local Kiwi ID', token_endpoint_auth_method: 'private_key_jwt', jwks,
      redirect_uris: [`${local.base}/oauth2/federation/kiwi-b/callback`], scopes: ['openid', 'profile', 'email', 'groups'],
    }).clients,
    result: undefined,
  }));
  await local.init();
  await local.start();
  await local.loginIdmAdmin();
  await kanidm(local)(['person', 'create', 'frank', 'Frank local']);
  frank = await uuidOf(local, 'frank');

  ({ service } = await serviceAt(local, 'kiwi-mail'));
  browser = await launchTrusting([local.caPath, b.caPath]);
});

after(async () => {
  await browser?.close();
  await service?.close();
  await local?.close();
  await b?.close();
});

async function kanidmLogin(page: Page, user: string): Promise<void> {
  await page.locator('input[name=username]').fill(user);
  await page.keyboard.press('Enter');
  await page.locator('input[type=password]').fill(PW);
  await page.keyboard.press('Enter');
}

test('upstream B (another Kiwi ID, private_key_jwt): sign in at B, back at the service as the linked local person', async () => {
  await kiwi(local, ['federation', 'link', 'kiwi-b', erinAtB, 'frank']);
  const page = await browser.newPage();
  await page.goto(`${service.url}/login`);
  await page.getByRole('button', { name: 'Partner Kiwi ID', exact: true }).click();
  // B sends its user to its own Kanidm; Kanidm's login page is on B's origin.
  await page.waitForURL((u) => u.origin === b.base && u.pathname.startsWith('/ui/'));
  await kanidmLogin(page, 'erin');
  await page.waitForURL(`${service.url}/`);
  assert.equal(await page.locator('#result').textContent(), 'Hello frank');
  const groups = JSON.parse((await page.locator('#groups').textContent())!) as string[];
  assert.ok(groups.includes('partners_b') && groups.includes('idm_all_persons@localhost'), String(groups));
  assert.deepEqual(JSON.parse((await page.locator('#amr').textContent())!), ['fed']);
});

test('JWT-bearer: an access token B issued for erin, audience the local issuer, gets tokens for frank once', async () => {
  let tokens: oidc.TokenEndpointResponse;
  // A partner app at B obtains the assertion: B's real authorization code flow in the browser,
  // back to the app's own HTTPS listener.
  const appPort = await freePort();
  let back: URL | undefined;
  const appServer = https.createServer(
    { cert: fs.readFileSync(path.join(local.root, 'tls/wrapper.crt')), key: fs.readFileSync(path.join(local.root, 'private/wrapper.key')) },
    (q, s) => {
      const u = new URL(q.url!, `https://localhost:${appPort}`);
      if (u.pathname === '/cb') back = u; // not the browser's favicon request
      s.end('ok');
    },
  );
  await new Promise<void>((r) => appServer.listen(appPort, '127.0.0.1', r));
  const appCb = `https://localhost:${appPort}/cb`;
  try {
    const added = await kiwi(b, ['client', 'add', 'partner-app', '--redirect-uri', appCb]);
    const fetchB = { [oidc.customFetch]: (u: string, i: object) => undiciFetch(u, { ...i, dispatcher: new Agent({ connect: { ca: fs.readFileSync(b.caPath) } }) }) as unknown as Promise<Response> };
    const app = await oidc.discovery(new URL(b.base), 'partner-app', undefined, oidc.ClientSecretBasic(/client_secret: (\S+)/.exec(added)![1]!), fetchB as oidc.DiscoveryRequestOptions);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const authz = oidc.buildAuthorizationUrl(app, {
      redirect_uri: appCb, scope: 'openid', state, resource: local.base,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const page = await browser.newPage();
    await page.goto(authz.href);
    await kanidmLogin(page, 'erin');
    await page.waitForURL((u) => u.href.startsWith(appCb));
    assert.ok(back?.searchParams.get('code'), 'the partner app got a code');
    tokens = await oidc.authorizationCodeGrant(app, back!, { pkceCodeVerifier: verifier, expectedState: state }, { resource: local.base });
  } finally {
    appServer.close();
  }
  const assertion = tokens!.access_token;

  const api = await kiwi(local, ['client', 'add', 'svc-api', '--grant', GRANT]);
  const fetchLocal = { [oidc.customFetch]: (u: string, i: object) => undiciFetch(u, { ...i, dispatcher: local.dispatcher }) as unknown as Promise<Response> };
  const rp = await oidc.discovery(new URL(local.base), 'svc-api', undefined, oidc.ClientSecretBasic(/client_secret: (\S+)/.exec(api)![1]!), fetchLocal as oidc.DiscoveryRequestOptions);
  const got = await oidc.genericGrantRequest(rp, GRANT, { assertion, scope: 'openid profile' });
  const claims = await verify(got.id_token!, fs.readFileSync(path.join(local.root, 'jwt-public.pem'), 'utf8'), { issuer: local.base, audience: 'svc-api' });
  assert.equal(claims.sub, frank);
  assert.equal(claims.preferred_username, 'frank');
  assert.deepEqual(claims.amr, ['fed']);
  await assert.rejects(oidc.genericGrantRequest(rp, GRANT, { assertion, scope: 'openid' }), (e: oidc.ResponseBodyError) => {
    assert.equal(e.error, 'invalid_grant');
    assert.match(e.error_description ?? '', /jti already used/);
    return true;
  });
});
