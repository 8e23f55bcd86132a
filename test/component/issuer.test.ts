// The KiwiStack issuer (oidc-provider + our config, adapter, clients, keys)
// behind the real front door, exercised by a real RP library (openid-client)
// and raw HTTP. User login at Kanidm is not part of this file: where a test
// needs a signed-in user's grant, it is minted with the provider's own models,
// exactly what a finished login stores. The browser + Kanidm flow lives in
// test/integration (needs the real pinned Kanidm).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as oidc from 'openid-client';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { publicJwks } from '../../wrapper/src/crypto/keys.js';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { Accounts } from '../../wrapper/src/oidc/accounts.js';
import { KanidmLogin } from '../../wrapper/src/oidc/login/kanidm.js';
import { form, IssuerHarness } from './harness/issuer.js';
import { CookieBrowser } from './harness/cookie-browser.js';

// Login is the real Kanidm login client; only its first half (the redirect) runs here.
const h = new IssuerHarness(
  (self) =>
    new KanidmLogin({
      publicOrigin: self.issuer,
      upstreamAddr: 'https://127.0.0.1:1',
      dispatcher: self.dispatcher,
      clientId: 'kiwi-id',
      clientSecret: 'kanidm-issued-secret',
      redirectUri: `${self.issuer}/oauth2/login/callback`,
      store: self.store,
      domain: 'localhost',
    }),
);
let jwtClientKey: CryptoKey;

before(async () => {
  await h.start();
  const pair = await generateKeyPair('ES256', { extractable: true });
  jwtClientKey = pair.privateKey as CryptoKey;
  const publicJwk: JWK = { ...(await exportJWK(pair.publicKey)), alg: 'ES256', use: 'sig', kid: 'svc-jwt-1' };
  h.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'], post_logout_redirect_uris: ['https://mail.kiwi.test/'] });
  h.register({ client_id: 'kiwi-chat', redirect_uris: ['https://chat.kiwi.test/cb'], token_endpoint_auth_method: 'none', scopes: ['openid', 'profile'] });
  h.register({ client_id: 'kiwi-files', redirect_uris: ['https://files.kiwi.test/cb'], allowed_groups: ['files_users'] });
  h.register({ client_id: 'svc-backup', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'client_secret_post', redirect_uris: [] });
  h.register({ client_id: 'svc-jwt', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [publicJwk as Record<string, unknown>] }, redirect_uris: [] });
});
after(() => h.close());

const http = (p: string, init?: Parameters<IssuerHarness['http']>[1]) => h.http(p, init);
const secrets = h.secrets;
const basic = (id: string) => h.basic(id);

test('discovery: one issuer, the sheet\'s endpoints, code flow with S256 only', async () => {
  const r = await http('/.well-known/openid-configuration');
  assert.equal(r.status, 200);
  const d = JSON.parse(r.text);
  assert.equal(d.issuer, h.issuer);
  assert.equal(d.authorization_endpoint, `${h.issuer}/oauth2/authorize`);
  assert.equal(d.token_endpoint, `${h.issuer}/oauth2/token`);
  assert.equal(d.userinfo_endpoint, `${h.issuer}/oauth2/userinfo`);
  assert.equal(d.jwks_uri, `${h.issuer}/oauth2/keys`);
  assert.equal(d.introspection_endpoint, `${h.issuer}/oauth2/introspect`);
  assert.equal(d.revocation_endpoint, `${h.issuer}/oauth2/revoke`);
  assert.equal(d.end_session_endpoint, `${h.issuer}/oauth2/logout`);
  assert.deepEqual(d.response_types_supported, ['code']);
  assert.ok(d.grant_types_supported.includes('authorization_code'));
  assert.ok(d.grant_types_supported.includes('refresh_token'));
  assert.ok(d.grant_types_supported.includes('client_credentials'));
  assert.deepEqual(d.subject_types_supported, ['public']);
  assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(d.id_token_signing_alg_values_supported, ['ES256']);
  assert.ok(d.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
  assert.equal(r.headers['x-frame-options'], 'DENY');
  assert.equal(r.headers['referrer-policy'], 'no-referrer');
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000');
});

test('/oauth2/keys serves exactly jwt_public_key, without private members', async () => {
  const r = await http('/oauth2/keys');
  const jwks = JSON.parse(r.text);
  assert.deepEqual(jwks.keys.map((k: JWK) => ({ ...k })), publicJwks(h.key).keys.map((k) => ({ ...k })));
  assert.equal(jwks.keys[0].d, undefined);
});

test('Kanidm\'s own OAuth2 paths on the same origin still go to Kanidm', async () => {
  // /oauth2/token is the issuer's; /oauth2/token/introspect and /ui/oauth2 are Kanidm's.
  assert.equal((await http('/oauth2/token/introspect', form({}))).status, 503);
  assert.equal((await http('/ui/oauth2')).status, 503);
  assert.equal((await http('/oauth2/openid/kiwi-id/.well-known/openid-configuration')).status, 503);
});

test('client_credentials (client_secret_post, via openid-client): JWT access token verifies offline with jwt_public_key', async () => {
  const config = await h.rp('svc-backup', oidc.ClientSecretPost(secrets['svc-backup']));
  const t = await oidc.clientCredentialsGrant(config, { resource: 'https://mail.kiwi.test' });
  const claims = await verify(t.access_token, h.key.publicPem, { issuer: h.issuer, audience: 'https://mail.kiwi.test' });
  assert.equal(claims.client_id, 'svc-backup');
  const header = JSON.parse(Buffer.from(t.access_token.split('.')[0]!, 'base64url').toString());
  assert.equal(header.alg, 'ES256');
  assert.equal(header.kid, h.key.kid);
  await assert.rejects(verify(t.access_token, h.key.publicPem, { issuer: h.issuer, audience: 'https://chat.kiwi.test' }));
});

test('client_credentials with private_key_jwt client authentication', async () => {
  const config = await h.rp('svc-jwt', oidc.PrivateKeyJwt({ key: jwtClientKey, kid: 'svc-jwt-1' }));
  const t = await oidc.clientCredentialsGrant(config, { resource: 'https://files.kiwi.test' });
  const claims = await verify(t.access_token, h.key.publicPem, { issuer: h.issuer, audience: 'https://files.kiwi.test' });
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
  const huge = await http('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc-backup', padding: 'x'.repeat(200_000) }));
  assert.ok(huge.status >= 400 && huge.status < 500, `oversized body: ${huge.status}`);
  assert.doesNotMatch(huge.text, /at \w+ \(|node_modules/);
});

test('clients file changes reach the running issuer: a removed client is refused at once', async () => {
  h.register({ client_id: 'svc-temp', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'client_secret_post', redirect_uris: [] });
  const body = () => form({ grant_type: 'client_credentials', client_id: 'svc-temp', client_secret: secrets['svc-temp']! });
  assert.equal((await http('/oauth2/token', body())).status, 200);
  h.unregister('svc-temp');
  const after = await http('/oauth2/token', body());
  assert.equal(after.status, 401);
  assert.equal(JSON.parse(after.text).error, 'invalid_client');
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
  assert.equal(kanidm.origin + kanidm.pathname, `${h.issuer}/ui/oauth2`);
  assert.equal(kanidm.searchParams.get('client_id'), 'kiwi-id');
  assert.equal(kanidm.searchParams.get('redirect_uri'), `${h.issuer}/oauth2/login/callback`);
  assert.equal(kanidm.searchParams.get('code_challenge_method'), 'S256');
  assert.match(kanidm.searchParams.get('state') ?? '', /^[\w-]{20,}$/);
  assert.match(kanidm.searchParams.get('scope') ?? '', /groups/);
  // Without the interaction cookie (another browser) the step is refused.
  assert.equal((await http(interaction)).status, 400);
});

test('login callback with an unknown state is refused cleanly', async () => {
  const r = await http('/oauth2/login/callback?code=abc&state=forged-state-value');
  assert.equal(r.status, 400);
  assert.doesNotMatch(r.text, /at \w+ \(/);
});

test('Kanidm refusing the login (e.g. not in its scope map) reaches the service as access_denied; the callback works once', async () => {
  const browser = new CookieBrowser(h);
  const { challenge } = pkce();
  // Kanidm is absent here: the browser stops at its login page (503 from the proxy).
  const atKanidm = await browser.go(authorizeUrl({ client_id: 'kiwi-mail', redirect_uri: 'https://mail.kiwi.test/callback', code_challenge: challenge, code_challenge_method: 'S256', state: 'st-deny' }));
  assert.equal(atKanidm.url.pathname, '/ui/oauth2');
  const state = atKanidm.url.searchParams.get('state')!;
  // What Kanidm's authorisation endpoint sends back when it refuses.
  const callback = `/oauth2/login/callback?error=access_denied&state=${encodeURIComponent(state)}`;
  const atService = (await browser.go(callback)).url;
  assert.match(browser.hops.slice(-2).join(' '), /^\/oauth2\/login\/callback \/oauth2\/authorize\/[\w-]+$/, 'callback, then the resume step');
  assert.equal(atService.origin + atService.pathname, 'https://mail.kiwi.test/callback');
  assert.equal(atService.searchParams.get('error'), 'access_denied');
  assert.equal(atService.searchParams.get('state'), 'st-deny');
  assert.equal(atService.searchParams.get('code'), null);
  assert.equal((await http(callback)).status, 400, 'a used login state is refused');
});

/** What a finished Kanidm login leaves behind: an account snapshot and a grant. */
async function signedIn(clientId: string, scope: string, usePkce = true) {
  const accountId = 'b1f5d7e2-0000-4000-8000-000000000001';
  await new Accounts(h.store, 3600).save({ sub: accountId, preferred_username: 'alice', email: 'alice@kiwi.test', email_verified: true, groups: ['mail_users@idm.kiwi.test'] });
  const grant = new h.provider.Grant({ accountId, clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const client = (await h.provider.Client.find(clientId))!;
  const { verifier, challenge } = pkce();
  const code = new h.provider.AuthorizationCode({
    accountId,
    client,
    grantId,
    scope,
    redirectUri: client.redirectUris![0]!,
    ...(usePkce && { codeChallenge: challenge, codeChallengeMethod: 'S256' }),
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
  const idClaims = await verify(tokens.id_token, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-mail' });
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

test('the sheet\'s token request, exactly as shown, works for a confidential client (authenticated by Basic auth)', async () => {
  // A confidential service that did not use PKCE at /authorize (PKCE is optional
  // for confidential clients, required for public ones).
  const { code } = await signedIn('kiwi-mail', 'openid', false);
  const seed = `grant_type=authorization_code&code=${code}&redirect_uri=https://mail.kiwi.test/callback&client_id=kiwi-mail`;
  const r = await http('/oauth2/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('kiwi-mail') }, body: seed });
  assert.equal(r.status, 200, r.text);
  await verify(JSON.parse(r.text).id_token, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-mail' });
  // Without client authentication the same body is refused: kiwi-mail is not a public client.
  const { code: other } = await signedIn('kiwi-mail', 'openid', false);
  const anon = await http('/oauth2/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: seed.replace(code, other) });
  assert.equal(anon.status, 401);
  assert.equal(JSON.parse(anon.text).error, 'invalid_client');
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
  await h.restart();

  const refresh = (rt: string) => http('/oauth2/token', { method: 'POST', headers, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString() });
  const r1 = await refresh(t0.refresh_token);
  assert.equal(r1.status, 200, r1.text);
  const t1 = JSON.parse(r1.text);
  assert.notEqual(t1.refresh_token, t0.refresh_token, 'refresh token rotated');
  await verify(t1.id_token, h.key.publicPem, { issuer: h.issuer, audience: 'kiwi-mail' });

  const reuse = await refresh(t0.refresh_token);
  assert.equal(reuse.status, 400);
  assert.equal(JSON.parse(reuse.text).error, 'invalid_grant');
  const family = await refresh(t1.refresh_token);
  assert.equal(JSON.parse(family.text).error, 'invalid_grant', 'reuse must revoke the rotated successor too');
});

test('issuer events are counted (tokens issued, OAuth2 errors, revocations)', () => {
  assert.ok((h.events['grant.success'] ?? 0) >= 5, JSON.stringify(h.events));
  assert.ok((h.events['grant.error'] ?? 0) >= 3, JSON.stringify(h.events));
  assert.ok((h.events['grant.revoked'] ?? 0) >= 1, JSON.stringify(h.events));
  assert.ok((h.events['authorization.error'] ?? 0) >= 2, JSON.stringify(h.events));
  assert.equal(h.events['server_error'], undefined, 'no server_error in the whole suite');
});

test('the issuer log contains none of the secrets used above', () => {
  const all = h.logLines.join('');
  for (const s of Object.values(secrets)) assert.equal(all.includes(s), false);
});
