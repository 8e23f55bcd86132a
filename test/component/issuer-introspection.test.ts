// Introspection (RFC 7662) and revocation (RFC 7009) of every token format
// the issuer hands out, through openid-client as a resource server would use
// them. The case that used to fail: a JWT access token issued for a
// `resource` verified offline but introspected as `active: false` while
// valid, and revoking it changed nothing anyone could see.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { form, IssuerHarness } from './harness/issuer.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { eventually, logout, signIn } from './harness/sign-in.js';

const h = new IssuerHarness((self) => new ScriptedLogin(self));
// A second issuer whose tokens live 2 s: expiry without waiting long.
const short = new IssuerHarness((self) => new ScriptedLogin(self), 'ES256', { ttl: { access_token_ttl: 2 } });
const FILES = 'https://files.kiwi.test';

let mail: oidc.Configuration;
let filesRs: oidc.Configuration;

before(async () => {
  await Promise.all([h.start(), short.start()]);
  for (const x of [h, short]) {
    x.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'], post_logout_redirect_uris: ['https://mail.kiwi.test/bye'] });
    // The resource server: it introspects with its own credentials.
    x.register({ client_id: 'kiwi-files', redirect_uris: [`${FILES}/cb`], grant_types: ['client_credentials', 'authorization_code'], scopes: ['openid', 'groups'] });
    x.register({ client_id: 'svc-backup', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'client_secret_post', redirect_uris: [] });
  }
  mail = await h.rp('kiwi-mail', oidc.ClientSecretBasic(h.secrets['kiwi-mail']));
  filesRs = await h.rp('kiwi-files', oidc.ClientSecretBasic(h.secrets['kiwi-files']));
});
after(async () => {
  await h.close();
  await short.close();
});

const code = { redirect_uri: 'https://mail.kiwi.test/callback', resource: FILES };

test('a user\'s JWT access token for a resource: verifies offline, introspects active with its claims, inactive once revoked', async () => {
  const { tokens } = await signIn(h, mail, code, { resource: FILES });
  const at = tokens.access_token;
  assert.equal(at.split('.').length, 3, 'a JWT access token');
  const offline = await verify(at, h.key.publicPem, { issuer: h.issuer, audience: FILES, typ: 'at+jwt' });

  const active = await oidc.tokenIntrospection(filesRs, at);
  assert.equal(active.active, true);
  assert.equal(active.sub, offline.sub);
  assert.equal(active.client_id, 'kiwi-mail');
  assert.equal(active.aud, FILES);
  assert.equal(active.iss, h.issuer);
  assert.equal(active.exp, offline.exp);
  assert.equal(active.iat, offline.iat);
  assert.equal(active.jti, offline.jti);
  assert.equal(active.token_type, 'Bearer');
  assert.equal(active.preferred_username, 'alice');
  assert.deepEqual(active.groups, ['mail_users@idm.kiwi.test']);
  assert.match(String(active.scope), /groups/);

  // RFC 7009: 200 either way; now introspection shows that it took effect.
  await oidc.tokenRevocation(mail, at);
  assert.deepEqual(await oidc.tokenIntrospection(filesRs, at), { active: false });
  // The token itself still verifies offline until it expires: that is what offline verification means.
  await verify(at, h.key.publicPem, { issuer: h.issuer, audience: FILES });
});

test('revoking the grant (refresh token revocation) makes its JWT access tokens inactive, and refresh stops', async () => {
  const { tokens } = await signIn(h, mail, code, { resource: FILES });
  assert.equal((await oidc.tokenIntrospection(filesRs, tokens.access_token)).active, true);
  assert.equal((await oidc.tokenIntrospection(filesRs, tokens.refresh_token!)).active, true);
  await oidc.tokenRevocation(mail, tokens.refresh_token!);
  assert.equal((await oidc.tokenIntrospection(filesRs, tokens.access_token)).active, false);
  assert.equal((await oidc.tokenIntrospection(filesRs, tokens.refresh_token!)).active, false);
  await assert.rejects(oidc.refreshTokenGrant(mail, tokens.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
});

test('logging out of the session makes its session-bound JWT access tokens inactive', async () => {
  // Without offline_access the tokens belong to the browser session.
  const { tokens, browser } = await signIn(h, mail, { ...code, scope: 'openid profile groups' }, { resource: FILES });
  assert.equal((await oidc.tokenIntrospection(filesRs, tokens.access_token)).active, true);
  const done = await logout(browser, mail, tokens.id_token!, 'https://mail.kiwi.test/bye');
  assert.equal(done.url.origin, 'https://mail.kiwi.test');
  assert.equal((await oidc.tokenIntrospection(filesRs, tokens.access_token)).active, false);
});

test('client_credentials JWT: active, then inactive after revocation by its client', async () => {
  const backup = await h.rp('svc-backup', oidc.ClientSecretPost(h.secrets['svc-backup']));
  const t = await oidc.clientCredentialsGrant(backup, { resource: FILES });
  const claims = await oidc.tokenIntrospection(filesRs, t.access_token);
  assert.equal(claims.active, true);
  assert.equal(claims.client_id, 'svc-backup');
  assert.equal(claims.sub, 'svc-backup');
  assert.equal(claims.aud, FILES);
  await oidc.tokenRevocation(backup, t.access_token);
  assert.equal((await oidc.tokenIntrospection(filesRs, t.access_token)).active, false);
});

test('a token the issuer did not issue exactly as presented is inactive (altered JWT, bare jti, garbage)', async () => {
  const backup = await h.rp('svc-backup', oidc.ClientSecretPost(h.secrets['svc-backup']));
  const t = await oidc.clientCredentialsGrant(backup, { resource: FILES });
  const [head, body, sig] = t.access_token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
  const altered = `${head}.${Buffer.from(JSON.stringify({ ...claims, scope: 'admin' })).toString('base64url')}.${sig}`;
  assert.equal((await oidc.tokenIntrospection(filesRs, altered)).active, false);
  // The jti is public (it is in the JWT); it must not work as an opaque token anywhere.
  assert.equal((await oidc.tokenIntrospection(filesRs, claims.jti)).active, false);
  const userinfo = await h.http('/oauth2/userinfo', { headers: { authorization: `Bearer ${claims.jti}` } });
  assert.equal(userinfo.status, 401);
  assert.equal((await oidc.tokenIntrospection(filesRs, 'eyJ.not.a-token')).active, false);
  // A resource JWT is not for userinfo.
  const atUserinfo = await h.http('/oauth2/userinfo', { headers: { authorization: `Bearer ${t.access_token}` } });
  assert.equal(atUserinfo.status, 401);
  // And the untouched token is still fine.
  assert.equal((await oidc.tokenIntrospection(filesRs, t.access_token)).active, true);
});

test('an expired JWT access token is inactive', async () => {
  const backup = await short.rp('svc-backup', oidc.ClientSecretPost(short.secrets['svc-backup']));
  const rs = await short.rp('kiwi-files', oidc.ClientSecretBasic(short.secrets['kiwi-files']));
  const t = await oidc.clientCredentialsGrant(backup, { resource: FILES });
  const { exp } = await verify(t.access_token, short.key.publicPem, { issuer: short.issuer, audience: FILES });
  const first = await oidc.tokenIntrospection(rs, t.access_token);
  // Active while exp is ahead (checked against exp, not against a guess of how fast this machine is).
  if (Date.now() / 1000 < exp! - 1) assert.equal(first.active, true);
  await eventually('the token to expire', async () => Date.now() / 1000 > exp! + 1);
  assert.deepEqual(await oidc.tokenIntrospection(rs, t.access_token), { active: false });
});

test('introspection needs client authentication', async () => {
  const r = await h.http('/oauth2/introspect', form({ token: 'x' }));
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.text).error, 'invalid_request');
  const wrong = await h.http('/oauth2/introspect', form({ token: 'x', client_id: 'svc-backup', client_secret: 'nope' }));
  assert.equal(wrong.status, 401);
  assert.equal(JSON.parse(wrong.text).error, 'invalid_client');
});
