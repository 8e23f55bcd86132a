// Pushed authorization requests (RFC 9126) and DPoP (RFC 9449), available to
// every client and required per client (`require_pushed_authorization_requests`,
// `dpop_bound_access_tokens`), driven by openid-client. A protected resource
// (a KiwiStack service) checks DPoP-bound JWT access tokens offline with
// `kiwi-id/verify`: signature, audience, and cnf.jkt against the request's proof.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { verify, TokenError } from 'kiwi-id/verify';
import { form, IssuerHarness } from './harness/issuer.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { CookieBrowser } from './harness/cookie-browser.js';
import { authorize } from './harness/sign-in.js';

const h = new IssuerHarness((self) => new ScriptedLogin(self));
const NOTES_CB = 'https://notes.kiwi.test/cb';
let api: https.Server;
let apiUrl = '';

before(async () => {
  await h.start();
  h.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'] });
  h.register({ client_id: 'kiwi-bank', redirect_uris: ['https://bank.kiwi.test/cb'], require_pushed_authorization_requests: true });
  h.register({ client_id: 'kiwi-notes', redirect_uris: [NOTES_CB], dpop_bound_access_tokens: true });
  h.register({ client_id: 'svc-dpop', grant_types: ['client_credentials'], scopes: ['groups'], redirect_uris: [], dpop_bound_access_tokens: true });
  // The protected resource: a service API that verifies tokens offline, DPoP included.
  api = https.createServer({ cert: fs.readFileSync(h.tls.certPath), key: fs.readFileSync(h.tls.keyPath) }, (req, res) => {
    const [scheme, token] = String(req.headers.authorization ?? '').split(' ');
    const proof = req.headers.dpop as string | undefined;
    verify(token ?? '', h.key.publicPem, {
      issuer: h.issuer,
      audience: 'https://notes.kiwi.test',
      typ: 'at+jwt',
      ...(scheme === 'DPoP' && proof ? { dpop: { proof, method: req.method!, url: apiUrl + req.url } } : {}),
    }).then(
      (claims) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sub: claims.sub })),
      (err: TokenError) => res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ code: err.code, message: err.message })),
    );
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  apiUrl = `https://localhost:${(api.address() as AddressInfo).port}`;
});
after(async () => {
  await h.close();
  api.closeAllConnections();
  await new Promise((r) => api.close(r));
});

const basic = (id: string) => h.rp(id, oidc.ClientSecretBasic(h.secrets[id]));
const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, any>;

/** A DPoP proof made by hand (for replay and mismatch cases openid-client will not produce). */
async function proof(keys: CryptoKeyPair, htm: string, htu: string, accessToken?: string) {
  const jwk = await exportJWK(keys.publicKey);
  return new SignJWT({ htm, htu, jti: randomUUID(), ...(accessToken && { ath: createHash('sha256').update(accessToken).digest('base64url') }) })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
    .setIssuedAt()
    .sign(keys.privateKey);
}

test('discovery lists the PAR endpoint (PAR optional globally) and DPoP algorithms', async () => {
  const d = JSON.parse((await h.http('/.well-known/openid-configuration')).text);
  assert.equal(d.pushed_authorization_request_endpoint, `${h.issuer}/oauth2/par`);
  assert.notEqual(d.require_pushed_authorization_requests, true, 'required per client, not for all');
  assert.ok(Array.isArray(d.dpop_signing_alg_values_supported) && d.dpop_signing_alg_values_supported.includes('ES256'));
});

test('PAR through openid-client: the browser carries only request_uri; the code works', async () => {
  const config = await basic('kiwi-mail');
  const verifier = oidc.randomPKCECodeVerifier();
  const url = await oidc.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: 'https://mail.kiwi.test/callback', scope: 'openid profile', state: 's-par', nonce: 'n-par',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri']);
  assert.match(url.searchParams.get('request_uri')!, /^urn:ietf:params:oauth:request_uri:/);
  const browser = new CookieBrowser(h);
  const landed = (await browser.go(url.href)).url;
  const tokens = await oidc.authorizationCodeGrant(config, landed, { pkceCodeVerifier: verifier, expectedState: 's-par', expectedNonce: 'n-par' });
  assert.ok(tokens.id_token);
  // A request_uri is single-use.
  const again = (await new CookieBrowser(h).go(url.href));
  assert.ok(again.status === 400 || again.url.searchParams.get('error'), 'replayed request_uri refused');
  assert.match(again.text + again.url.search, /invalid_request_uri|invalid_request/);
});

test('a client that requires PAR: a plain authorization request is refused, PAR works', async () => {
  const config = await basic('kiwi-bank');
  const plain = await authorize(new CookieBrowser(h), config, { redirect_uri: 'https://bank.kiwi.test/cb', scope: 'openid' });
  assert.equal(plain.landed.origin, 'https://bank.kiwi.test');
  assert.equal(plain.landed.searchParams.get('error'), 'invalid_request');
  assert.match(plain.landed.searchParams.get('error_description') ?? '', /Pushed Authorization Request/i);
  assert.equal(plain.landed.searchParams.get('code'), null);
  const url = await oidc.buildAuthorizationUrlWithPAR(config, { redirect_uri: 'https://bank.kiwi.test/cb', scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
  const landed = (await new CookieBrowser(h).go(url.href)).url;
  assert.ok(landed.searchParams.get('code'), landed.href);
});

test('PAR refuses what /authorize refuses: unregistered redirect URI, no client authentication', async () => {
  const bad = await h.http('/oauth2/par', form({ response_type: 'code', client_id: 'kiwi-mail', redirect_uri: 'https://evil.example/cb', scope: 'openid' }, { authorization: h.basic('kiwi-mail') }));
  assert.equal(bad.status, 400);
  // RFC 9126 section 2.3: invalid_request at the PAR endpoint.
  assert.equal(JSON.parse(bad.text).error, 'invalid_request');
  assert.match(JSON.parse(bad.text).error_description, /redirect_uri/);
  const anon = await h.http('/oauth2/par', form({ response_type: 'code', client_id: 'kiwi-mail', redirect_uri: 'https://mail.kiwi.test/callback', scope: 'openid' }));
  assert.equal(anon.status, 401);
  assert.equal(JSON.parse(anon.text).error, 'invalid_client');
});

test('DPoP through openid-client: bound tokens (cnf.jkt), userinfo with proofs, a service verifies offline with kiwi-id/verify', async () => {
  const config = await basic('kiwi-notes');
  const keys = await oidc.randomDPoPKeyPair('ES256');
  const DPoP = oidc.getDPoPHandle(config, keys);
  const jkt = await calculateJwkThumbprint(await exportJWK(keys.publicKey));
  const { landed, verifier, state, nonce } = await authorize(new CookieBrowser(h), config, { redirect_uri: NOTES_CB, resource: 'https://notes.kiwi.test', scope: 'openid profile groups offline_access' });
  const tokens = await oidc.authorizationCodeGrant(config, landed, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce }, { resource: 'https://notes.kiwi.test' }, { DPoP });
  assert.equal(tokens.token_type, 'dpop');
  assert.equal(claimsOf(tokens.access_token).cnf?.jkt, jkt);

  // The service checks the token and the proof openid-client made for this request.
  const ok = await oidc.fetchProtectedResource(config, tokens.access_token, new URL('/notes', apiUrl), 'GET', undefined, undefined, { DPoP });
  assert.equal(ok.status, 200, await ok.clone().text());
  assert.equal((await ok.json()).sub, 'u-alice');

  // Introspection shows the binding.
  const rs = await basic('kiwi-mail');
  const intro = await oidc.tokenIntrospection(rs, tokens.access_token);
  assert.equal(intro.token_type, 'DPoP');
  assert.equal((intro.cnf as { jkt: string }).jkt, jkt);

  // Refresh needs the same key; the new token is bound too.
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, { resource: 'https://notes.kiwi.test' }, { DPoP });
  assert.equal(claimsOf(refreshed.access_token).cnf?.jkt, jkt);
  await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');

  // An opaque (userinfo) token bound to the key: userinfo wants the proof.
  const { landed: l2, verifier: v2, state: s2, nonce: n2 } = await authorize(new CookieBrowser(h), config, { redirect_uri: NOTES_CB, scope: 'openid profile' });
  const t2 = await oidc.authorizationCodeGrant(config, l2, { pkceCodeVerifier: v2, expectedState: s2, expectedNonce: n2 }, undefined, { DPoP });
  assert.equal((await oidc.fetchUserInfo(config, t2.access_token, 'u-alice', { DPoP })).preferred_username, 'alice');
  const asBearer = await h.http('/oauth2/userinfo', { headers: { authorization: `Bearer ${t2.access_token}` } });
  assert.equal(asBearer.status, 401, 'a DPoP-bound token is no bearer token');
  // The same userinfo proof twice: the issuer detects the replay.
  const headers = { authorization: `DPoP ${t2.access_token}`, dpop: await proof(keys, 'GET', `${h.issuer}/oauth2/userinfo`, t2.access_token) };
  assert.equal((await h.http('/oauth2/userinfo', { headers })).status, 200);
  const replayed = await h.http('/oauth2/userinfo', { headers });
  assert.equal(replayed.status, 401);
  assert.match(String(replayed.headers['www-authenticate']), /^DPoP .*error="invalid_token"/);
});

test('replayed, mismatched or missing DPoP proofs are refused (issuer and kiwi-id/verify)', async () => {
  const config = await basic('svc-dpop');
  const keys = await oidc.randomDPoPKeyPair('ES256');
  const other = await oidc.randomDPoPKeyPair('ES256');
  // Without a proof this client gets nothing.
  await assert.rejects(oidc.clientCredentialsGrant(config, { resource: 'https://notes.kiwi.test' }), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');

  // The same proof twice at the token endpoint: the second is a replay.
  const tokenProof = await proof(keys, 'POST', `${h.issuer}/oauth2/token`);
  const body = form({ grant_type: 'client_credentials', resource: 'https://notes.kiwi.test' }, { authorization: h.basic('svc-dpop'), dpop: tokenProof });
  const first = await h.http('/oauth2/token', body);
  assert.equal(first.status, 200, first.text);
  const replay = await h.http('/oauth2/token', body);
  assert.equal(replay.status, 400);
  assert.equal(JSON.parse(replay.text).error, 'invalid_grant');
  assert.ok(h.logLines.some((l) => /"error_detail":"DPoP proof JWT Replay detected"/.test(l)), 'the log says why');
  const at = JSON.parse(first.text).access_token as string;

  // At the service: a fresh proof passes once; the same proof again is a replay.
  const url = `${apiUrl}/notes`;
  const p1 = await proof(keys, 'GET', url, at);
  const opts = (p: string) => ({ issuer: h.issuer, audience: 'https://notes.kiwi.test', dpop: { proof: p, method: 'GET', url } });
  assert.equal((await verify(at, h.key.publicPem, opts(p1))).client_id, 'svc-dpop');
  await assert.rejects(verify(at, h.key.publicPem, opts(p1)), (e: TokenError) => e.code === 'dpop_replay');
  // A proof by another key, for another method or URL, or without ath binding to this token.
  await assert.rejects(verify(at, h.key.publicPem, opts(await proof(other, 'GET', url, at))), (e: TokenError) => e.code === 'dpop_binding_mismatch');
  await assert.rejects(verify(at, h.key.publicPem, opts(await proof(keys, 'POST', url, at))), (e: TokenError) => e.code === 'invalid_dpop_proof');
  await assert.rejects(verify(at, h.key.publicPem, opts(await proof(keys, 'GET', `${apiUrl}/other`, at))), (e: TokenError) => e.code === 'invalid_dpop_proof');
  await assert.rejects(verify(at, h.key.publicPem, opts(await proof(keys, 'GET', url))), (e: TokenError) => /ath/.test(e.message));
  // The bound token without any proof is refused, even where no DPoP was expected.
  await assert.rejects(verify(at, h.key.publicPem, { issuer: h.issuer, audience: 'https://notes.kiwi.test' }), (e: TokenError) => e.code === 'dpop_required');

});

test('the DPoP-bound token reaches the service only with its key: through the API server', async () => {
  const config = await basic('svc-dpop');
  const keys = await oidc.randomDPoPKeyPair('ES256');
  const t = await oidc.clientCredentialsGrant(config, { resource: 'https://notes.kiwi.test' }, { DPoP: oidc.getDPoPHandle(config, keys) });
  const asBearer = await fetchApi(t.access_token, 'Bearer');
  assert.equal(asBearer.status, 401);
  assert.equal(asBearer.body.code, 'dpop_required');
  const stolenKey = await fetchApi(t.access_token, 'DPoP', await proof(await oidc.randomDPoPKeyPair('ES256'), 'GET', `${apiUrl}/notes`, t.access_token));
  assert.equal(stolenKey.status, 401);
  assert.equal(stolenKey.body.code, 'dpop_binding_mismatch');
  const right = await fetchApi(t.access_token, 'DPoP', await proof(keys, 'GET', `${apiUrl}/notes`, t.access_token));
  assert.equal(right.status, 200);
});

async function fetchApi(token: string, scheme: string, dpop?: string) {
  const r = await h.http(`${apiUrl}/notes`, { headers: { authorization: `${scheme} ${token}`, ...(dpop && { dpop }) } });
  return { status: r.status, body: JSON.parse(r.text) as { code?: string } };
}
