// The KiwiStack issuer (oidc-provider + our config, adapter, clients, keys)
// behind the real front door, exercised by a real RP library (openid-client)
// and raw HTTP. User login at Kanidm is not part of this file: where a test
// needs a signed-in user's grant, it is minted with the provider's own models,
// exactly what a finished login stores. The browser + Kanidm flow lives in
// test/integration (needs the real pinned Kanidm).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Agent, fetch as undiciFetch, request } from 'undici';
import * as oidc from 'openid-client';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type Provider from 'oidc-provider';
import { addClient, saveClients, type ClientInput, type ClientRecord } from '../../wrapper/src/clients.js';
import { generateSigningKeyPair, loadSigningKey, publicJwks, type SigningKey } from '../../wrapper/src/keys.js';
import { createLogger } from '../../wrapper/src/log.js';
import { generateDevCertificate } from '../../wrapper/src/tls-certs.js';
import { verify } from '../../wrapper/src/verify.js';
import { SqliteStateStore } from '../../wrapper/src/state/store.js';
import { FrontDoor, type Route } from '../../wrapper/src/server/front-door.js';
import { createMetrics } from '../../wrapper/src/server/metrics.js';
import { UpstreamProxy } from '../../wrapper/src/server/proxy.js';
import { proxyAgent, upstreamTls } from '../../wrapper/src/upstream/tls.js';
import { Accounts } from '../../wrapper/src/oidc/accounts.js';
import { ClientsSource } from '../../wrapper/src/oidc/clients-source.js';
import { createIssuer } from '../../wrapper/src/oidc/issuer.js';
import { KanidmLogin } from '../../wrapper/src/oidc/upstream-login.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-issuer-'));
const tls = {
  certPath: path.join(root, 'tls/server.crt'),
  keyPath: path.join(root, 'tls/server.key'),
  caPath: path.join(root, 'tls/ca.crt'),
  hostnames: ['localhost'],
  ips: ['127.0.0.1'],
  days: 2,
};
generateDevCertificate(tls);
const ca = fs.readFileSync(tls.caPath);
const dispatcher = new Agent({ connect: { ca } });
const clientsFile = path.join(root, 'clients.toml');
const logLines: string[] = [];
const log = createLogger({
  level: 'info',
  destination: new Writable({ write: (c, _e, cb) => (logLines.push(String(c)), cb()) }),
});
const TTL = { access_token_ttl: 300, refresh_token_ttl: 3600, auth_code_ttl: 60, id_token_ttl: 300, session_ttl: 3600 };

let key: SigningKey;
let store: SqliteStateStore;
let provider: Provider;
let issuerRoute: Route;
let front: FrontDoor;
let issuer: string;
let clients: ClientRecord[] = [];
const secrets: Record<string, string> = {};
let jwtClientKey: CryptoKey;

function register(input: ClientInput) {
  const r = addClient(clients, input);
  clients = r.clients;
  if (r.secret) secrets[input.client_id] = r.secret;
  saveClients(clientsFile, clients);
}

function startIssuer() {
  const made = createIssuer({
    issuer,
    key,
    store,
    clients: new ClientsSource(clientsFile, log),
    login: new KanidmLogin({
      publicOrigin: issuer,
      upstreamAddr: 'https://127.0.0.1:1',
      dispatcher,
      clientId: 'kiwi-id',
      clientSecret: 'kanidm-issued-secret',
      redirectUri: `${issuer}/oauth2/login/callback`,
      store,
    }),
    ttl: TTL,
    cookieKeys: [randomBytes(32).toString('base64url')],
    log,
  });
  provider = made.provider;
  issuerRoute = made.route;
}

before(async () => {
  await generateSigningKeyPair(path.join(root, 'jwt-private.pem'), path.join(root, 'jwt-public.pem'), 'ES256');
  key = await loadSigningKey(path.join(root, 'jwt-private.pem'), path.join(root, 'jwt-public.pem'));
  store = new SqliteStateStore({ dataDir: path.join(root, 'data') });
  const pair = await generateKeyPair('ES256', { extractable: true });
  jwtClientKey = pair.privateKey as CryptoKey;
  const publicJwk: JWK = { ...(await exportJWK(pair.publicKey)), alg: 'ES256', use: 'sig', kid: 'svc-jwt-1' };
  register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'], post_logout_redirect_uris: ['https://mail.kiwi.test/'] });
  register({ client_id: 'kiwi-chat', redirect_uris: ['https://chat.kiwi.test/cb'], token_endpoint_auth_method: 'none', scopes: ['openid', 'profile'] });
  register({ client_id: 'kiwi-files', redirect_uris: ['https://files.kiwi.test/cb'], allowed_groups: ['files_users'] });
  register({ client_id: 'svc-backup', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'client_secret_post', redirect_uris: [] });
  register({ client_id: 'svc-jwt', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [publicJwk as Record<string, unknown>] }, redirect_uris: [] });

  const proxy = new UpstreamProxy({
    target: 'https://127.0.0.1:1',
    agent: proxyAgent(upstreamTls('https://127.0.0.1:1', tls.caPath)),
    timeoutMs: 1000,
    maxBodySize: 65536,
    isHealthy: () => false, // Kanidm is not part of this test: its paths answer 503
    log,
  });
  front = new FrontDoor({
    host: '127.0.0.1',
    port: 0,
    tlsCert: tls.certPath,
    tlsKey: tls.keyPath,
    maxHeaderSize: 16384,
    drainTimeoutMs: 1000,
    log,
    metrics: createMetrics({ processMetrics: false }),
    proxy,
    isReady: () => true,
    // The issuer URL contains the port, known only after listen(): delegate.
    routes: [{ name: 'oidc', matches: (p) => issuerRoute.matches(p), handle: (q, s) => issuerRoute.handle(q, s) }],
  });
  const addr = await front.listen();
  issuer = `https://localhost:${addr.port}`;
  startIssuer();
});

after(async () => {
  await front.drain();
  await store.close();
  await dispatcher.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** openid-client configuration for one registered client, trusting the test CA. */
async function rp(clientId: string, auth: oidc.ClientAuth) {
  const config = await oidc.discovery(new URL(issuer), clientId, undefined, auth, {
    [oidc.customFetch]: (url: string, init: object) => undiciFetch(url, { ...init, dispatcher }) as unknown as Promise<Response>,
  } as oidc.DiscoveryRequestOptions);
  return config;
}

async function http(p: string, init: Parameters<typeof request>[1] = {}) {
  const res = await request(issuer + p, { dispatcher, ...init });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

function form(fields: Record<string, string>) {
  return { method: 'POST' as const, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() };
}

const basic = (id: string) => 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secrets[id]!)}`).toString('base64');

test('discovery: one issuer, the sheet\'s endpoints, code flow with S256 only', async () => {
  const r = await http('/.well-known/openid-configuration');
  assert.equal(r.status, 200);
  const d = JSON.parse(r.text);
  assert.equal(d.issuer, issuer);
  assert.equal(d.authorization_endpoint, `${issuer}/oauth2/authorize`);
  assert.equal(d.token_endpoint, `${issuer}/oauth2/token`);
  assert.equal(d.userinfo_endpoint, `${issuer}/oauth2/userinfo`);
  assert.equal(d.jwks_uri, `${issuer}/oauth2/keys`);
  assert.equal(d.introspection_endpoint, `${issuer}/oauth2/introspect`);
  assert.equal(d.revocation_endpoint, `${issuer}/oauth2/revoke`);
  assert.equal(d.end_session_endpoint, `${issuer}/oauth2/logout`);
  assert.deepEqual(d.response_types_supported, ['code']);
  assert.ok(d.grant_types_supported.includes('authorization_code'));
  assert.ok(d.grant_types_supported.includes('refresh_token'));
  assert.ok(d.grant_types_supported.includes('client_credentials'));
  assert.deepEqual(d.subject_types_supported, ['public']);
  assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(d.id_token_signing_alg_values_supported, ['ES256']);
  assert.ok(d.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
});

test('/oauth2/keys serves exactly jwt_public_key, without private members', async () => {
  const r = await http('/oauth2/keys');
  const jwks = JSON.parse(r.text);
  assert.deepEqual(jwks.keys.map((k: JWK) => ({ ...k })), publicJwks(key).keys.map((k) => ({ ...k })));
  assert.equal(jwks.keys[0].d, undefined);
});

test('Kanidm\'s own OAuth2 paths on the same origin still go to Kanidm', async () => {
  // /oauth2/token is the issuer's; /oauth2/token/introspect and /ui/oauth2 are Kanidm's.
  assert.equal((await http('/oauth2/token/introspect', form({}))).status, 503);
  assert.equal((await http('/ui/oauth2')).status, 503);
  assert.equal((await http('/oauth2/openid/kiwi-id/.well-known/openid-configuration')).status, 503);
});

test('client_credentials (client_secret_post, via openid-client): JWT access token verifies offline with jwt_public_key', async () => {
  const config = await rp('svc-backup', oidc.ClientSecretPost(secrets['svc-backup']));
  const t = await oidc.clientCredentialsGrant(config, { resource: 'https://mail.kiwi.test' });
  const claims = await verify(t.access_token, key.publicPem, { issuer, audience: 'https://mail.kiwi.test' });
  assert.equal(claims.client_id, 'svc-backup');
  const header = JSON.parse(Buffer.from(t.access_token.split('.')[0]!, 'base64url').toString());
  assert.equal(header.alg, 'ES256');
  assert.equal(header.kid, key.kid);
  await assert.rejects(verify(t.access_token, key.publicPem, { issuer, audience: 'https://chat.kiwi.test' }));
});

test('client_credentials with private_key_jwt client authentication', async () => {
  const config = await rp('svc-jwt', oidc.PrivateKeyJwt({ key: jwtClientKey, kid: 'svc-jwt-1' }));
  const t = await oidc.clientCredentialsGrant(config, { resource: 'https://files.kiwi.test' });
  const claims = await verify(t.access_token, key.publicPem, { issuer, audience: 'https://files.kiwi.test' });
  assert.equal(claims.client_id, 'svc-jwt');
});

test('bad client credentials and unknown resources get OAuth2 errors', async () => {
  const wrong = await http('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc-backup', client_secret: 'not-the-secret' }));
  assert.equal(wrong.status, 401);
  assert.equal(JSON.parse(wrong.text).error, 'invalid_client');
  const target = await http('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc-backup', client_secret: secrets['svc-backup']!, resource: 'https://evil.example' }));
  assert.equal(target.status, 400);
  assert.equal(JSON.parse(target.text).error, 'invalid_target');
  const grant = await http('/oauth2/token', form({ grant_type: 'password', client_id: 'svc-backup', client_secret: secrets['svc-backup']!, username: 'a', password: 'b' }));
  assert.equal(grant.status, 400);
  assert.equal(JSON.parse(grant.text).error, 'unsupported_grant_type');
  const junk = await http('/oauth2/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"not":' });
  assert.equal(junk.status, 400);
  assert.doesNotMatch(junk.text, /at \w+ \(|node_modules/);
});

test('introspection and revocation of a service token', async () => {
  const issued = await http('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc-backup', client_secret: secrets['svc-backup']! }));
  const token = JSON.parse(issued.text).access_token as string;
  const auth = { client_id: 'svc-backup', client_secret: secrets['svc-backup']! };
  const before = JSON.parse((await http('/oauth2/introspect', form({ ...auth, token }))).text);
  assert.equal(before.active, true);
  assert.equal(before.client_id, 'svc-backup');
  assert.equal((await http('/oauth2/revoke', form({ ...auth, token }))).status, 200);
  assert.equal(JSON.parse((await http('/oauth2/introspect', form({ ...auth, token }))).text).active, false);
});

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(params: Record<string, string>) {
  return '/oauth2/authorize?' + new URLSearchParams({ response_type: 'code', scope: 'openid', state: 's1', nonce: 'n1', ...params });
}

test('wrong redirect_uri: error page at Kiwi ID, never a redirect to it', async () => {
  const { challenge } = pkce();
  const r = await http(authorizeUrl({ client_id: 'kiwi-mail', redirect_uri: 'https://mail.kiwi.test/callback/../evil', code_challenge: challenge, code_challenge_method: 'S256' }));
  assert.equal(r.status, 400);
  assert.equal(r.headers.location, undefined);
  assert.match(r.text, /invalid_redirect_uri/);
  // Exact match: a trailing slash is a different URI.
  const slash = await http(authorizeUrl({ client_id: 'kiwi-mail', redirect_uri: 'https://mail.kiwi.test/callback/' }));
  assert.equal(slash.status, 400);
});

test('public client without PKCE, or with plain PKCE: invalid_request back to the client', async () => {
  const none = await http(authorizeUrl({ client_id: 'kiwi-chat', redirect_uri: 'https://chat.kiwi.test/cb' }));
  assert.equal(none.status, 303);
  const to = new URL(String(none.headers.location));
  assert.equal(to.origin + to.pathname, 'https://chat.kiwi.test/cb');
  assert.equal(to.searchParams.get('error'), 'invalid_request');
  assert.equal(to.searchParams.get('state'), 's1');
  const plain = await http(authorizeUrl({ client_id: 'kiwi-chat', redirect_uri: 'https://chat.kiwi.test/cb', code_challenge: 'x'.repeat(43), code_challenge_method: 'plain' }));
  assert.equal(new URL(String(plain.headers.location)).searchParams.get('error'), 'invalid_request');
});

test('a valid authorization request sends the browser to Kanidm\'s login with PKCE and state', async () => {
  const { challenge } = pkce();
  const first = await http(authorizeUrl({ client_id: 'kiwi-mail', redirect_uri: 'https://mail.kiwi.test/callback', code_challenge: challenge, code_challenge_method: 'S256' }));
  assert.equal(first.status, 303);
  const interaction = String(first.headers.location);
  assert.match(interaction, /^\/oauth2\/interaction\/[\w-]+$/);
  const cookies = ([] as string[]).concat(first.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
  assert.match(cookies, /kiwi_interaction=/);
  const second = await http(interaction, { headers: { cookie: cookies } });
  assert.equal(second.status, 303);
  const kanidm = new URL(String(second.headers.location));
  assert.equal(kanidm.origin + kanidm.pathname, `${issuer}/ui/oauth2`);
  assert.equal(kanidm.searchParams.get('client_id'), 'kiwi-id');
  assert.equal(kanidm.searchParams.get('redirect_uri'), `${issuer}/oauth2/login/callback`);
  assert.equal(kanidm.searchParams.get('code_challenge_method'), 'S256');
  assert.match(kanidm.searchParams.get('state') ?? '', /^[\w-]{20,}$/);
  assert.match(kanidm.searchParams.get('scope') ?? '', /groups/);
  // Without the interaction cookie (another browser) the step is refused.
  assert.equal((await http(interaction)).status, 400);
});

test('login callback with an unknown or replayed state is refused cleanly', async () => {
  const r = await http('/oauth2/login/callback?code=abc&state=forged-state-value');
  assert.equal(r.status, 400);
  assert.doesNotMatch(r.text, /at \w+ \(/);
});

/** What a finished Kanidm login leaves behind: an account snapshot and a grant. */
async function signedIn(clientId: string, scope: string) {
  const accountId = 'b1f5d7e2-0000-4000-8000-000000000001';
  await new Accounts(store, 3600).save({ sub: accountId, preferred_username: 'alice', email: 'alice@kiwi.test', email_verified: true, groups: ['mail_users@idm.kiwi.test'] });
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const client = (await provider.Client.find(clientId))!;
  const { verifier, challenge } = pkce();
  const code = new provider.AuthorizationCode({
    accountId,
    client,
    grantId,
    scope,
    redirectUri: client.redirectUris![0]!,
    codeChallenge: challenge,
    codeChallengeMethod: 'S256',
    nonce: 'n1',
    authTime: Math.floor(Date.now() / 1000),
  } as never);
  return { code: await code.save(), verifier, accountId };
}

test('code exchange (seed request + client auth): id_token verifies offline; replay fails and revokes', async () => {
  const { code, verifier, accountId } = await signedIn('kiwi-mail', 'openid profile email groups');
  const body = { grant_type: 'authorization_code', code, redirect_uri: 'https://mail.kiwi.test/callback', client_id: 'kiwi-mail', code_verifier: verifier };
  const first = await http('/oauth2/token', { ...form(body), headers: { ...form(body).headers, authorization: basic('kiwi-mail') } });
  assert.equal(first.status, 200, first.text);
  const tokens = JSON.parse(first.text);
  const idClaims = await verify(tokens.id_token, key.publicPem, { issuer, audience: 'kiwi-mail' });
  assert.equal(idClaims.sub, accountId);
  assert.equal(idClaims.preferred_username, 'alice');
  assert.deepEqual(idClaims.groups, ['mail_users@idm.kiwi.test']);
  assert.equal(idClaims.nonce, 'n1');
  const userinfo = await http('/oauth2/userinfo', { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(JSON.parse(userinfo.text).email, 'alice@kiwi.test');

  const replay = await http('/oauth2/token', { ...form(body), headers: { ...form(body).headers, authorization: basic('kiwi-mail') } });
  assert.equal(replay.status, 400);
  assert.equal(JSON.parse(replay.text).error, 'invalid_grant');
  const after = await http('/oauth2/userinfo', { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(after.status, 401, 'tokens from a replayed code must be revoked');
});

test('code exchange: wrong redirect_uri or wrong code_verifier is invalid_grant', async () => {
  const { code, verifier } = await signedIn('kiwi-mail', 'openid');
  const bad = await http('/oauth2/token', { ...form({ grant_type: 'authorization_code', code, redirect_uri: 'https://mail.kiwi.test/other', code_verifier: verifier }), headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('kiwi-mail') } });
  assert.equal(JSON.parse(bad.text).error, 'invalid_grant');
  const other = await signedIn('kiwi-mail', 'openid');
  const wrongVerifier = await http('/oauth2/token', { ...form({ grant_type: 'authorization_code', code: other.code, redirect_uri: 'https://mail.kiwi.test/callback', code_verifier: pkce().verifier }), headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('kiwi-mail') } });
  assert.equal(JSON.parse(wrongVerifier.text).error, 'invalid_grant');
});

test('refresh: rotation, reuse detection revokes the family, and tokens survive an issuer restart', async () => {
  const { code, verifier } = await signedIn('kiwi-mail', 'openid offline_access');
  const headers = { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('kiwi-mail') };
  const t0 = JSON.parse((await http('/oauth2/token', { method: 'POST', headers, body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: 'https://mail.kiwi.test/callback', code_verifier: verifier }).toString() })).text);
  assert.ok(t0.refresh_token, 'refresh token issued');

  // Restart: a new provider over a reopened store.
  await store.close();
  store = new SqliteStateStore({ dataDir: path.join(root, 'data') });
  startIssuer();

  const refresh = (rt: string) => http('/oauth2/token', { method: 'POST', headers, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString() });
  const r1 = await refresh(t0.refresh_token);
  assert.equal(r1.status, 200, r1.text);
  const t1 = JSON.parse(r1.text);
  assert.notEqual(t1.refresh_token, t0.refresh_token, 'refresh token rotated');
  await verify(t1.id_token, key.publicPem, { issuer, audience: 'kiwi-mail' });

  const reuse = await refresh(t0.refresh_token);
  assert.equal(reuse.status, 400);
  assert.equal(JSON.parse(reuse.text).error, 'invalid_grant');
  const family = await refresh(t1.refresh_token);
  assert.equal(JSON.parse(family.text).error, 'invalid_grant', 'reuse must revoke the rotated successor too');
});

test('the issuer log contains none of the secrets used above', () => {
  const all = logLines.join('');
  for (const s of Object.values(secrets)) assert.equal(all.includes(s), false);
});
