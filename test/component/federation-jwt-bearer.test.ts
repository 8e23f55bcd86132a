// The JWT-bearer grant (RFC 7523) at the local token endpoint, driven by
// openid-client. The genuine assertion is a real peer's: upstream B (a Kiwi
// ID) issues a JWT access token for its user with `aud` = the local issuer.
// Assertions with chosen faults are signed by the scripted IdP, which is in
// trusted_issuers; each fault is invalid_grant and yields no token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as oidc from 'openid-client';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { FederatedPair } from './harness/federation.js';
import { RogueIdp } from './fixtures/rogue-idp.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const rogue = new RogueIdp();
const pair = new FederatedPair({
  // One PEM bundle (relative to the config) trusted for every upstream: B's CA and the scripted IdP's.
  federation: () => ({ ca_file: 'upstream-cas.pem', trusted_issuers: [rogue.issuer] }),
});
const FRANK = '00000000-0000-4000-8000-00000000f4a2';
let api: oidc.Configuration;

before(async () => {
  await rogue.start();
  fs.writeFileSync(path.join(pair.local.root, 'upstream-cas.pem'), fs.readFileSync(pair.upstream.tls.caPath, 'utf8') + fs.readFileSync(rogue.tls.caPath, 'utf8'));
  await pair.start();
  pair.local.register({ client_id: 'kiwi-api', grant_types: [GRANT], scopes: ['openid', 'profile', 'groups'] });
  pair.local.register({ client_id: 'kiwi-other', grant_types: ['client_credentials'], scopes: ['openid'] });
  api = await pair.local.rp('kiwi-api', oidc.ClientSecretBasic(pair.local.secrets['kiwi-api']!));
  pair.directory.add({ uuid: FRANK, name: 'frank', groups: ['ops@idm.kiwi.test'] });
  await pair.federation.links.link({ issuer: pair.upstream.issuer, idp: 'kiwi-b', upstream_sub: 'b-frank', person: FRANK, how: 'admin' });
  await pair.federation.links.link({ issuer: rogue.issuer, idp: rogue.issuer, upstream_sub: 'r-frank', person: FRANK, how: 'admin' });
});
after(async () => {
  await pair.close();
  await rogue.close();
});

/** B's user signs in to a B app; B issues a JWT access token whose audience is the local issuer. */
async function assertionFromB(): Promise<string> {
  pair.upstream.register({ client_id: `partner-app-${randomUUID()}`, redirect_uris: ['https://partner.test/cb'] });
  const id = Object.keys(pair.upstream.secrets).at(-1)!;
  const app = await pair.upstream.rp(id, oidc.ClientSecretBasic(pair.upstream.secrets[id]!));
  pair.upstreamLogin.user = { sub: 'b-frank', preferred_username: 'frank.b' };
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(app, {
    redirect_uri: 'https://partner.test/cb', scope: 'openid', state, resource: pair.local.issuer,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const landed = await pair.browser().go(url);
  assert.equal(landed.url.origin, 'https://partner.test');
  const tokens = await oidc.authorizationCodeGrant(app, landed.url, { pkceCodeVerifier: verifier, expectedState: state }, { resource: pair.local.issuer });
  return tokens.access_token;
}

function grant(assertion: string, scope: string | undefined = undefined, config = api) {
  scope ??= 'openid profile groups';
  return oidc.genericGrantRequest(config, GRANT, { assertion, scope });
}

async function refused(assertion: string, why: RegExp, config = api): Promise<void> {
  await assert.rejects(grant(assertion, undefined, config), (e: oidc.ResponseBodyError) => {
    assert.equal(e.error, 'invalid_grant', `${e.error}: ${e.error_description}`);
    assert.match(e.error_description ?? '', why);
    return true;
  });
}

const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({
  iss: rogue.issuer, sub: 'r-frank', aud: pair.local.issuer, iat: now(), exp: now() + 60, jti: randomUUID(), ...extra,
});

test('a real peer\'s assertion (upstream B) gets tokens for the linked person; its jti works once', async () => {
  const assertion = await assertionFromB();
  const tokens = await grant(assertion);
  const idc = await verify(tokens.id_token!, pair.local.key.publicPem, { issuer: pair.local.issuer, audience: 'kiwi-api' });
  assert.equal(idc.sub, FRANK);
  assert.deepEqual(idc.amr, ['fed']);
  assert.deepEqual(idc.groups, ['ops@idm.kiwi.test', 'partners']);
  const info = await oidc.fetchUserInfo(api, tokens.access_token, FRANK);
  assert.equal(info.preferred_username, 'frank');
  await refused(assertion, /jti already used/);
});

test('an assertion addressed to the token endpoint is accepted too', async () => {
  const t = await grant(await rogue.sign(claims({ aud: `${pair.local.issuer}/oauth2/token` })));
  assert.ok(t.access_token);
});

test('faulty assertions are invalid_grant', async () => {
  await refused(await rogue.sign(claims({ iat: now() - 200, exp: now() - 100 })), /exp/);
  await refused(await rogue.sign(claims({ exp: now() + 7200 })), /lifetime exceeds 3600/);
  await refused(await rogue.sign(claims({ iat: now() - 3000, exp: now() + 1000 })), /lifetime exceeds 3600/);
  await refused(await rogue.sign(claims({ aud: 'https://elsewhere.test' })), /aud/);
  await refused(await rogue.sign(claims({ iat: now() + 600 })), /iat/);
  await refused(await rogue.sign(claims({ nbf: now() + 600 })), /nbf/);
  await refused(await rogue.sign(claims({ jti: undefined })), /jti/);
  await refused(await rogue.sign(claims({ iss: 'https://untrusted.test' })), /issuer is not trusted/);
  await refused(await rogue.sign(claims(), { foreign: true }), /signature/);
  const none = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  await refused(`${none({ alg: 'none' })}.${none(claims())}.`, /alg|Unsupported/i);
  await refused(await rogue.sign(claims({ sub: 'r-nobody' })), /not linked/);
  await refused('not-a-jwt', /not a JWT/);
  const replayed = await rogue.sign(claims());
  await grant(replayed);
  await refused(replayed, /jti already used/);
});

test('a client not allowed the grant is refused before any assertion check', async () => {
  const other = await pair.local.rp('kiwi-other', oidc.ClientSecretBasic(pair.local.secrets['kiwi-other']!));
  await assert.rejects(grant(await rogue.sign(claims()), 'openid', other), (e: oidc.ResponseBodyError) => {
    // RFC 6749 5.2 for a grant type the client is not registered for (oidc-provider says invalid_request; responses.ts corrects it).
    assert.equal(e.error, 'unauthorized_client');
    assert.match(e.error_description ?? '', /grant type is not allowed for this client/);
    return true;
  });
});

test('discovery lists the grant; results are counted', async () => {
  const meta = api.serverMetadata();
  assert.ok(meta.grant_types_supported?.includes(GRANT));
  const m = await pair.metric('kiwi_federation_jwt_bearer_total');
  assert.match(m, /result="success"} 3/);
  assert.match(m, /result="invalid_grant"} 1[0-9]/);
});
