// Discovery lists exactly what is enabled, every endpoint it lists is served
// by the issuer (not passed on to Kanidm on the shared origin), and what is not
// enabled answers the proper OAuth2 error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { form, IssuerHarness } from './harness/issuer.js';

const h = new IssuerHarness(() => null, 'ES256', { registrationToken: 'registration-token-for-tests-0123456789abcdef' });
const off = new IssuerHarness(() => null);

before(async () => {
  await Promise.all([h.start(), off.start()]);
  for (const x of [h, off]) {
    x.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'] });
  }
});
after(async () => {
  await h.close();
  await off.close();
});

const discovery = async (x: IssuerHarness) => JSON.parse((await x.http('/.well-known/openid-configuration')).text) as Record<string, unknown>;

const ENDPOINTS = {
  authorization_endpoint: '/oauth2/authorize',
  token_endpoint: '/oauth2/token',
  userinfo_endpoint: '/oauth2/userinfo',
  jwks_uri: '/oauth2/keys',
  introspection_endpoint: '/oauth2/introspect',
  revocation_endpoint: '/oauth2/revoke',
  end_session_endpoint: '/oauth2/logout',
  device_authorization_endpoint: '/oauth2/device_authorization',
  pushed_authorization_request_endpoint: '/oauth2/par',
  registration_endpoint: '/oauth2/register',
};

test('discovery: exactly the enabled endpoints and capabilities', async () => {
  const d = await discovery(h);
  const endpoints = Object.keys(d).filter((k) => k.endsWith('_endpoint') || k === 'jwks_uri').sort();
  assert.deepEqual(endpoints, Object.keys(ENDPOINTS).sort());
  for (const [k, p] of Object.entries(ENDPOINTS)) assert.equal(d[k], h.issuer + p, k);
  assert.deepEqual(d.grant_types_supported, ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code']);
  assert.deepEqual(d.response_types_supported, ['code']);
  assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(d.dpop_signing_alg_values_supported, ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256']);
  assert.equal(d.backchannel_logout_supported, true);
  assert.equal(d.backchannel_logout_session_supported, true);
  assert.equal(d.request_parameter_supported, false);
  assert.equal(d.request_uri_parameter_supported, false);
  assert.equal(d.claims_parameter_supported, false);
  // Not offered, so not advertised.
  for (const k of ['frontchannel_logout_supported', 'backchannel_authentication_endpoint', 'mtls_endpoint_aliases', 'tls_client_certificate_bound_access_tokens', 'check_session_iframe', 'request_object_signing_alg_values_supported', 'authorization_signing_alg_values_supported', 'introspection_signing_alg_values_supported', 'userinfo_signing_alg_values_supported']) {
    assert.equal(d[k], undefined, k);
  }
});

test('without a registration token, discovery has no registration_endpoint (and the rest is the same)', async () => {
  const [on, without] = [await discovery(h), await discovery(off)];
  assert.equal(without.registration_endpoint, undefined);
  const strip = (d: Record<string, unknown>, x: IssuerHarness) => JSON.parse(JSON.stringify(d).replaceAll(x.issuer, 'ISSUER'));
  const { registration_endpoint: _r, ...rest } = strip(on, h);
  assert.deepEqual(strip(without, off), rest);
});

test('every advertised endpoint is the issuer\'s, not Kanidm\'s (which shares the origin)', async () => {
  for (const p of Object.values(ENDPOINTS)) {
    for (const method of ['GET', 'POST'] as const) {
      const r = await h.http(p, { method, headers: { accept: 'application/json' } });
      assert.notEqual(r.status, 503, `${method} ${p} reached the (absent) Kanidm`);
      assert.doesNotMatch(r.text, /at \w+ \(|node_modules/, `${method} ${p}: no stack`);
    }
  }
});

test('what is not enabled answers the proper OAuth2 error', async () => {
  const auth = { authorization: h.basic('kiwi-mail') };
  for (const grant of ['password', 'implicit', 'urn:openid:params:grant-type:ciba', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'urn:ietf:params:oauth:grant-type:token-exchange', 'urn:ietf:params:oauth:grant-type:saml2-bearer']) {
    const r = await h.http('/oauth2/token', form({ grant_type: grant }, auth));
    assert.equal(r.status, 400, grant);
    assert.equal(JSON.parse(r.text).error, 'unsupported_grant_type', grant);
  }
  // A grant that exists but the client is not registered for.
  const cc = await h.http('/oauth2/token', form({ grant_type: 'client_credentials' }, auth));
  assert.equal(JSON.parse(cc.text).error, 'unauthorized_client');

  const authorize = (params: Record<string, string>) => h.http('/oauth2/authorize?' + new URLSearchParams({ client_id: 'kiwi-mail', redirect_uri: 'https://mail.kiwi.test/callback', scope: 'openid', state: 's', ...params }));
  const errorAtClient = async (params: Record<string, string>) => {
    const r = await authorize(params);
    assert.equal(r.status, 303, JSON.stringify(params));
    // Implicit-style response types get their error in the fragment, as their response mode says.
    const to = new URL(String(r.headers.location));
    return to.searchParams.get('error') ?? new URLSearchParams(to.hash.slice(1)).get('error');
  };
  for (const rt of ['token', 'id_token', 'code id_token', 'code token', 'none']) assert.equal(await errorAtClient({ response_type: rt }), 'unsupported_response_type', rt);
  assert.equal(await errorAtClient({ response_type: 'code', request: 'eyJhbGciOiJub25lIn0.e30.' }), 'request_not_supported');
  assert.equal(await errorAtClient({ response_type: 'code', request_uri: 'https://evil.example/req' }), 'request_uri_not_supported');
  assert.equal(await errorAtClient({ response_type: 'code', response_mode: 'jwt' }), 'unsupported_response_mode');

  const reg = await off.http('/oauth2/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(reg.status, 404);
  assert.equal(JSON.parse(reg.text).error, 'invalid_request');
  // CIBA is not offered: its default path is not the issuer's (Kanidm's namespace, absent here: 503).
  assert.equal((await h.http('/backchannel', form({}))).status, 503);
});
