// Dynamic client registration (RFC 7591) and its management API (RFC 7592),
// guarded like the reference IdP's `registration_token`: absent, the endpoint
// is 404; present, only a bearer of that token registers. Registered clients
// live in the state store (origin node recorded), show up in
// `kiwi-id client list` beside the static ones, and never change a static one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Command, CommanderError } from 'commander';
import * as oidc from 'openid-client';
import { fetch as undiciFetch } from 'undici';
import { registerClientCommands } from '../../wrapper/src/cli/client.js';
import { verifySecret } from '../../wrapper/src/clients/client-secret.js';
import { REGISTERED_CLIENT_MODEL, StoreRegisteredClients } from '../../wrapper/src/clients/registered-clients.js';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { form, IssuerHarness } from './harness/issuer.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import { signIn } from './harness/sign-in.js';

const TOKEN = 'registration-token-for-tests-0123456789abcdef';
const h = new IssuerHarness((self) => new ScriptedLogin(self), 'ES256', { registrationToken: TOKEN });
const off = new IssuerHarness(() => null);

before(async () => {
  await Promise.all([h.start(), off.start()]);
  h.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/callback'] });
});
after(async () => {
  await h.close();
  await off.close();
});

const fetchOpts = (x: IssuerHarness) => ({
  [oidc.customFetch]: (url: string, init: object) => undiciFetch(url, { ...init, dispatcher: x.dispatcher }) as unknown as Promise<Response>,
});

function register(metadata: Partial<oidc.ClientMetadata>, initialAccessToken = TOKEN) {
  return oidc.dynamicClientRegistration(new URL(h.issuer), metadata, undefined, { initialAccessToken, ...fetchOpts(h) } as oidc.DynamicClientRegistrationRequestOptions);
}

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

test('without a registration token: no registration_endpoint, and /oauth2/register is 404', async () => {
  const d = JSON.parse((await off.http('/.well-known/openid-configuration')).text);
  assert.equal(d.registration_endpoint, undefined);
  const r = await off.http('/oauth2/register', { method: 'POST', ...json({ redirect_uris: ['https://x.kiwi.test/cb'] }, { authorization: `Bearer ${TOKEN}` }) });
  assert.equal(r.status, 404);
  assert.equal(JSON.parse(r.text).error, 'invalid_request');
  assert.equal((await off.http('/oauth2/register/kiwi-mail', { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
});

test('only a bearer of the registration token may register', async () => {
  const d = JSON.parse((await h.http('/.well-known/openid-configuration')).text);
  assert.equal(d.registration_endpoint, `${h.issuer}/oauth2/register`);
  const body = { redirect_uris: ['https://x.kiwi.test/cb'] };
  for (const authorization of [undefined, 'Bearer wrong-token-wrong-token-wrong-token-00', `Bearer ${TOKEN}x`, `Basic ${Buffer.from(`a:${TOKEN}`).toString('base64')}`]) {
    const r = await h.http('/oauth2/register', { method: 'POST', ...json(body, authorization ? { authorization } : {}) });
    assert.ok(r.status === 401 || r.status === 400, `${authorization}: ${r.status}`);
    assert.match(JSON.parse(r.text).error, /invalid_token|invalid_request/);
  }
  await assert.rejects(register(body, 'wrong-token-wrong-token-wrong-token-00'), (e: oidc.WWWAuthenticateChallengeError) => e.status === 401);
  assert.deepEqual(await new StoreRegisteredClients(h.store).list(), [], 'nothing was registered');
});

test('a registered client (via openid-client) signs users in; it lives in the state store with a hashed secret', async () => {
  const config = await register({
    client_name: 'Kiwi Notes',
    redirect_uris: ['https://notes.kiwi.test/cb'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_basic',
  });
  const meta = config.clientMetadata();
  assert.match(meta.client_id, /^reg-[0-9a-f]{24}$/);
  const secret = meta.client_secret as string;
  assert.ok(secret && secret.length >= 43);
  assert.equal(typeof meta.registration_access_token, 'string');
  assert.equal(meta.registration_client_uri, `${h.issuer}/oauth2/register/${meta.client_id}`);

  const stored = await h.store.find(REGISTERED_CLIENT_MODEL, meta.client_id);
  assert.equal(stored?.origin, h.store.nodeId);
  assert.notEqual(stored?.payload.client_secret, secret, 'never the plaintext secret at rest');
  assert.ok(verifySecret(secret, String(stored?.payload.client_secret)));

  const rp = await h.rp(meta.client_id, oidc.ClientSecretBasic(secret));
  const { tokens } = await signIn(h, rp, { redirect_uri: 'https://notes.kiwi.test/cb' });
  const claims = await verify(tokens.id_token!, h.key.publicPem, { issuer: h.issuer, audience: meta.client_id });
  assert.equal(claims.sub, 'u-alice');
  // A wrong secret is refused like for any client.
  const wrong = await h.rp(meta.client_id, oidc.ClientSecretBasic('not-the-secret'));
  await assert.rejects(oidc.refreshTokenGrant(wrong, tokens.refresh_token!), (e: oidc.WWWAuthenticateChallengeError) => e.status === 401 && /invalid_client/.test(JSON.stringify(e.cause)));

  // It survives a restart (it is state, not memory).
  await h.restart();
  const again = await h.rp(meta.client_id, oidc.ClientSecretBasic(secret));
  assert.ok((await oidc.refreshTokenGrant(again, tokens.refresh_token!)).access_token);
});

test('RFC 7592: read, update (registration access token rotated), delete', async () => {
  const config = await register({ client_name: 'Kiwi Tasks', redirect_uris: ['https://tasks.kiwi.test/cb'] });
  const { client_id: id, registration_access_token: rat, client_secret: secret } = config.clientMetadata() as Record<string, string>;
  const uri = `/oauth2/register/${id}`;
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  const read = await h.http(uri, { headers: bearer(rat!) });
  assert.equal(read.status, 200);
  const readBody = JSON.parse(read.text);
  assert.equal(readBody.client_name, 'Kiwi Tasks');
  assert.equal(readBody.client_secret, undefined, 'the stored hash is not shown as a secret');

  const put = await h.http(uri, { method: 'PUT', ...json({ client_id: id, client_name: 'Kiwi Tasks 2', redirect_uris: ['https://tasks.kiwi.test/cb2'] }, bearer(rat!)) });
  assert.equal(put.status, 200, put.text);
  const updated = JSON.parse(put.text);
  assert.equal(updated.client_name, 'Kiwi Tasks 2');
  assert.notEqual(updated.registration_access_token, rat, 'rotated');
  assert.equal((await h.http(uri, { headers: bearer(rat!) })).status, 401, 'the old registration access token is dead');
  // RFC 7592 §2.2: an update may repeat the client_secret; it must match the issued one (only its hash is kept).
  const wrongSecret = await h.http(uri, { method: 'PUT', ...json({ client_id: id, client_secret: 'not-the-secret', redirect_uris: ['https://tasks.kiwi.test/cb3'] }, bearer(updated.registration_access_token)) });
  assert.equal(wrongSecret.status, 400, wrongSecret.text);
  assert.equal(JSON.parse(wrongSecret.text).error, 'invalid_request');
  const wrongSecretNoToken = await h.http(uri, { method: 'PUT', ...json({ client_id: id, client_secret: secret, redirect_uris: ['https://tasks.kiwi.test/cb3'] }, bearer('not-a-token')) });
  assert.equal(wrongSecretNoToken.status, 401, 'the registration access token is checked whatever the body says');
  const withSecret = await h.http(uri, { method: 'PUT', ...json({ client_id: id, client_secret: secret, client_name: 'Kiwi Tasks 3', redirect_uris: ['https://tasks.kiwi.test/cb3'] }, bearer(updated.registration_access_token)) });
  assert.equal(withSecret.status, 200, withSecret.text);
  const third = JSON.parse(withSecret.text);
  assert.equal(third.client_name, 'Kiwi Tasks 3');
  assert.deepEqual(third.redirect_uris, ['https://tasks.kiwi.test/cb3']);
  assert.equal(third.client_secret, undefined, 'neither the secret nor its hash is echoed');
  assert.ok(verifySecret(secret!, String((await h.store.find(REGISTERED_CLIENT_MODEL, id!))?.payload.client_secret)), 'the stored secret is unchanged');
  const huge = await h.http(uri, { method: 'PUT', ...json({ client_id: id, client_name: 'x'.repeat(60_000), redirect_uris: ['https://tasks.kiwi.test/cb3'] }, bearer(third.registration_access_token)) });
  assert.equal(huge.status, 400, 'a body over oidc-provider\'s 56 KiB limit is refused, as without the secret check');
  assert.equal(JSON.parse(huge.text).error, 'invalid_request', huge.text);
  // The secret handed out at registration keeps working after the updates.
  const ok = await h.http('/oauth2/token', form({ grant_type: 'client_credentials' }, { authorization: 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64') }));
  assert.equal(JSON.parse(ok.text).error, 'unauthorized_client', `authenticated; the grant is not registered: ${ok.text}`);

  // Another client's registration access token cannot touch it.
  const other = (await register({ redirect_uris: ['https://other.kiwi.test/cb'] })).clientMetadata() as Record<string, string>;
  assert.equal((await h.http(uri, { method: 'DELETE', headers: bearer(other.registration_access_token!) })).status, 401);

  const del = await h.http(uri, { method: 'DELETE', headers: bearer(third.registration_access_token) });
  assert.equal(del.status, 204);
  assert.equal(await h.store.find(REGISTERED_CLIENT_MODEL, id!), undefined);
  const gone = await h.http('/oauth2/token', form({ grant_type: 'client_credentials' }, { authorization: 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64') }));
  assert.equal(JSON.parse(gone.text).error, 'invalid_client');
});

test('static clients cannot be read, changed or deleted through the API (403)', async () => {
  const rat = (await register({ redirect_uris: ['https://y.kiwi.test/cb'] })).clientMetadata().registration_access_token as string;
  for (const [method, body] of [['GET', undefined], ['PUT', json({ client_id: 'kiwi-mail', redirect_uris: ['https://evil.example/cb'] })], ['DELETE', undefined]] as const) {
    const r = await h.http('/oauth2/register/kiwi-mail', { method, ...(body ?? {}), headers: { ...(body?.headers ?? {}), authorization: `Bearer ${rat}` } });
    assert.equal(r.status, 403, `${method}: ${r.text}`);
    assert.match(JSON.parse(r.text).error_description, /clients file/);
  }
  assert.deepEqual((await h.provider.Client.find('kiwi-mail'))!.redirectUris, ['https://mail.kiwi.test/callback']);
  // Registration cannot pick a static client's id either: ids are handed out.
  const reg = (await register({ client_id: 'kiwi-mail', redirect_uris: ['https://z.kiwi.test/cb'] } as never)).clientMetadata();
  assert.notEqual(reg.client_id, 'kiwi-mail');
});

test('registration metadata follows the clients-file rules: exact https redirect URIs, offered grants only', async () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ redirect_uris: ['http://notes.example.com/cb'] }, /invalid_redirect_uri/],
    [{ redirect_uris: ['https://*.kiwi.test/cb'] }, /invalid_redirect_uri/],
    [{ redirect_uris: ['https://x.kiwi.test/cb#frag'] }, /invalid_redirect_uri/],
    [{ redirect_uris: ['https://x.kiwi.test/cb'], grant_types: ['authorization_code', 'password'] }, /invalid_client_metadata/],
    [{ redirect_uris: ['https://x.kiwi.test/cb'], response_types: ['token'] }, /invalid_client_metadata/],
    [{ redirect_uris: ['https://x.kiwi.test/cb'], backchannel_logout_uri: 'http://x.kiwi.test/logout' }, /invalid_client_metadata/],
    [{ redirect_uris: ['https://x.kiwi.test/cb'], 'urn:kiwi:allowed_groups': 'admins' }, /invalid_client_metadata/],
  ];
  for (const [metadata, error] of bad) {
    const r = await h.http('/oauth2/register', { method: 'POST', ...json(metadata, { authorization: `Bearer ${TOKEN}` }) });
    assert.equal(r.status, 400, JSON.stringify(metadata));
    assert.match(JSON.parse(r.text).error, error, JSON.stringify(metadata));
  }
  // A public device-flow client for a CLI tool is fine.
  const cli = (await register({ grant_types: ['urn:ietf:params:oauth:grant-type:device_code'], token_endpoint_auth_method: 'none', response_types: [], redirect_uris: [] })).clientMetadata();
  assert.equal(cli.client_secret, undefined);
});

test('kiwi-id client list shows registered clients beside the static ones (never a secret)', async () => {
  let stdout = '';
  const program = new Command('kiwi-id').exitOverride().configureOutput({ writeOut: (s) => void (stdout += s), writeErr: () => {} });
  registerClientCommands(program, () => h.clientsFile, (err) => { throw err; }, () => ({ registered: new StoreRegisteredClients(h.store), close: async () => {} }));
  const reg = (await register({ client_name: 'Listed', redirect_uris: ['https://listed.kiwi.test/cb'] })).clientMetadata();
  await program.parseAsync(['client', 'list'], { from: 'user' });
  assert.match(stdout, /^kiwi-mail\s.*\sstatic$/m);
  assert.match(stdout, new RegExp(`^${reg.client_id}\\s+Listed\\s.*registered@${h.store.nodeId}$`, 'm'));
  assert.equal(stdout.includes(String(reg.client_secret)), false);
  assert.doesNotMatch(stdout, /sha256\$/);

  stdout = '';
  await program.parseAsync(['client', 'show', String(reg.client_id)], { from: 'user' });
  const shown = JSON.parse(stdout);
  assert.equal(shown.source, 'registered');
  assert.equal(shown.has_secret, true);
  assert.equal(shown.client_secret, undefined);

  // It changes through its own registration, not the operator's clients-file commands.
  await assert.rejects(program.parseAsync(['client', 'update', String(reg.client_id), '--name', 'X'], { from: 'user' }), (e: CommanderError) => e.exitCode === 2 && /registered through \/oauth2\/register/.test(e.message));
  await assert.rejects(program.parseAsync(['client', 'rotate-secret', String(reg.client_id)], { from: 'user' }), (e: CommanderError) => e.exitCode === 2);

  stdout = '';
  await program.parseAsync(['client', 'remove', String(reg.client_id)], { from: 'user' });
  assert.match(stdout, /removed registered client/);
  assert.equal(await h.store.find(REGISTERED_CLIENT_MODEL, String(reg.client_id)), undefined);
  await assert.rejects(program.parseAsync(['client', 'remove', 'reg-nope'], { from: 'user' }), (e: CommanderError) => e.exitCode === 1);
});

test('registration events are counted and logged without secrets', () => {
  assert.ok((h.events['registration_create.success'] ?? 0) >= 4, JSON.stringify(h.events));
  const all = h.logLines.join('');
  assert.match(all, /registered client changed/);
  assert.equal(all.includes(TOKEN), false, 'the registration token is never logged');
  assert.doesNotMatch(all, /"client_secret"/);
});
