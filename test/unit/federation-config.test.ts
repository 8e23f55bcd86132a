// [federation] and [[federation.upstream_idps]]: every key honoured, strict
// errors as one line "FILE: KEY: problem", files checked for safe modes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../wrapper/src/config/config.js';

let dir: string;
let n = 0;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-fedcfg-'));
  for (const [name, mode] of [
    ['tls.crt', 0o644], ['tls.key', 0o600], ['jwt-private.pem', 0o600], ['jwt-public.pem', 0o644],
    ['client.pem', 0o600], ['secret', 0o600], ['open-secret', 0o644], ['ca.pem', 0o644],
  ] as const) {
    fs.writeFileSync(path.join(dir, name), 'x\n');
    fs.chmodSync(path.join(dir, name), mode);
  }
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const BASE = [
  'listen_addr = "127.0.0.1:8443"', 'tls_cert = "tls.crt"', 'tls_key = "tls.key"',
  'jwt_private_key = "jwt-private.pem"', 'jwt_public_key = "jwt-public.pem"', 'data_dir = "data"', 'upstream_ca = "ca.pem"',
].join('\n');

function write(text: string, mode = 0o600): string {
  const file = path.join(dir, `config-${n++}.toml`);
  fs.writeFileSync(file, `${BASE}\n${text}\n`);
  fs.chmodSync(file, mode);
  return file;
}

const idp = (extra = '', id = 'corp') => `
[[federation.upstream_idps]]
id = "${id}"
issuer = "https://sso.partner.test"
client_id = "kiwi"
private_key_path = "client.pem"
${extra}`;

function rejected(text: string, key: string, detail: RegExp, mode?: number): void {
  const file = write(text, mode);
  let caught: unknown;
  try {
    loadConfig(file);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${key}, got ${String(caught)}`);
  assert.equal(caught.key, key, caught.message);
  assert.ok(caught.message.startsWith(`${file}: ${key}: `), caught.message);
  assert.ok(!caught.message.includes('\n'));
  assert.match(caught.message, detail);
}

test('no [federation]: nothing configured, documented defaults', () => {
  const c = loadConfig(write(''));
  assert.deepEqual(c.federation, {
    trusted_issuers: [],
    max_clock_skew_secs: 30,
    max_assertion_lifetime_secs: 3600,
    kanidm_token_file: path.join(dir, 'data/kanidm-reader.token'),
    upstream_idps: [],
  });
});

test('every key of an OIDC upstream (private_key_jwt) and a plain OAuth2 upstream is honoured', () => {
  const c = loadConfig(write(`
[federation]
trusted_issuers = ["https://issuer.partner.test"]
max_clock_skew_secs = 10
max_assertion_lifetime_secs = 0
ca_file = "ca.pem"
kanidm_token_file = "reader.token"
${idp(`scopes = ["openid", "profile", "email"]
callback_path = "/internal/callback/corp"
default_groups = ["partners"]
default_acr = "urn:partner:loa2"
default_amr = ["pwd", "otp"]
display_name = "Partner SSO"
link_by_verified_email = true
ca_file = "ca.pem"`)}
[[federation.upstream_idps]]
id = "github"
issuer = "https://github.com"
client_id = "Iv1.abc"
client_secret_file = "secret"
token_endpoint_auth_method = "client_secret_post"
authorization_endpoint = "https://github.com/login/oauth/authorize"
token_endpoint = "https://github.com/login/oauth/access_token"
userinfo_endpoint = "https://api.github.com/user"
subject_claim = "id"
scopes = ["read:user"]
`));
  const f = c.federation;
  assert.deepEqual(f.trusted_issuers, ['https://issuer.partner.test']);
  assert.equal(f.max_clock_skew_secs, 10);
  assert.equal(f.max_assertion_lifetime_secs, 0);
  assert.equal(f.ca_file, path.join(dir, 'ca.pem'));
  assert.equal(f.kanidm_token_file, path.join(dir, 'reader.token'));
  assert.deepEqual(f.upstream_idps[0], {
    id: 'corp',
    issuer: 'https://sso.partner.test',
    client_id: 'kiwi',
    token_endpoint_auth_method: 'private_key_jwt',
    private_key_path: path.join(dir, 'client.pem'),
    scopes: ['openid', 'profile', 'email'],
    callback_path: '/internal/callback/corp',
    default_groups: ['partners'],
    default_acr: 'urn:partner:loa2',
    default_amr: ['pwd', 'otp'],
    display_name: 'Partner SSO',
    subject_claim: 'sub',
    link_by_verified_email: true,
    ca_file: path.join(dir, 'ca.pem'),
  });
  assert.deepEqual(f.upstream_idps[1], {
    id: 'github',
    issuer: 'https://github.com',
    client_id: 'Iv1.abc',
    token_endpoint_auth_method: 'client_secret_post',
    client_secret_file: path.join(dir, 'secret'),
    scopes: ['read:user'],
    callback_path: '/oauth2/federation/github/callback',
    default_groups: [],
    default_amr: [],
    display_name: 'github',
    authorization_endpoint: 'https://github.com/login/oauth/authorize',
    token_endpoint: 'https://github.com/login/oauth/access_token',
    userinfo_endpoint: 'https://api.github.com/user',
    subject_claim: 'id',
    link_by_verified_email: false,
  });
  assert.ok(Object.isFrozen(f) && Object.isFrozen(f.upstream_idps[0]));
});

test('defaults of an upstream: private_key_jwt, scope openid, callback under /oauth2/federation/ID', () => {
  const i = loadConfig(write(idp())).federation.upstream_idps[0]!;
  assert.equal(i.token_endpoint_auth_method, 'private_key_jwt');
  assert.deepEqual(i.scopes, ['openid']);
  assert.equal(i.callback_path, '/oauth2/federation/corp/callback');
  assert.equal(i.display_name, 'corp');
});

test('public upstream (none + PKCE) takes no secret; an inline secret needs a config others cannot read', () => {
  const pub = loadConfig(write(idp('token_endpoint_auth_method = "none"').replace('private_key_path = "client.pem"', '')));
  assert.equal(pub.federation.upstream_idps[0]!.token_endpoint_auth_method, 'none');
  const inline = idp('token_endpoint_auth_method = "client_secret_basic"\nclient_secret = "s3cret"').replace('private_key_path = "client.pem"', '');
  assert.equal(loadConfig(write(inline, 0o640)).federation.upstream_idps[0]!.client_secret, 's3cret');
  rejected(inline, '[federation.upstream_idps.corp].client_secret', /world-readable config file \(mode 0644\)/, 0o644);
});

test('strict errors name the key', () => {
  const noKey = (s: string) => s.replace('private_key_path = "client.pem"', '');
  rejected('[federation]\nfoo = 1', '[federation].foo', /unknown key/);
  rejected(idp('colour = "red"'), '[federation.upstream_idps.corp].colour', /unknown key/);
  rejected('[federation]\nmax_clock_skew_secs = -1', '[federation].max_clock_skew_secs', /non-negative integer/);
  rejected('[federation]\ntrusted_issuers = ["http://x.test"]', '[federation].trusted_issuers[0]', /must use https/);
  rejected('[federation]\ntrusted_issuers = "https://x.test"', '[federation].trusted_issuers', /expected an array/);
  rejected(idp().replace('client_id = "kiwi"', ''), '[federation.upstream_idps.corp].client_id', /is required/);
  rejected(idp().replace('id = "corp"', ''), '[[federation.upstream_idps]] #1.id', /is required/);
  rejected(idp('', 'bad id'), '[[federation.upstream_idps]] #1.id', /letters, digits/);
  rejected(idp('', 'kanidm'), '[[federation.upstream_idps]] #1.id', /reserved/);
  rejected(idp() + idp('', 'corp').replace('callback', 'x'), '[federation.upstream_idps.corp].id', /another upstream IdP/);
  rejected(idp().replace('https://sso.partner.test', 'http://sso.partner.test'), '[federation.upstream_idps.corp].issuer', /https/);
  rejected(idp('token_endpoint_auth_method = "client_secret_jwt"'), '[federation.upstream_idps.corp].token_endpoint_auth_method', /not one of/);
  rejected(noKey(idp()), '[federation.upstream_idps.corp].private_key_path', /required for token_endpoint_auth_method "private_key_jwt"/);
  rejected(idp('token_endpoint_auth_method = "none"'), '[federation.upstream_idps.corp].private_key_path', /only used with/);
  rejected(noKey(idp('token_endpoint_auth_method = "client_secret_post"')), '[federation.upstream_idps.corp].client_secret', /client_secret_file is required/);
  rejected(noKey(idp('token_endpoint_auth_method = "client_secret_post"\nclient_secret = "a"\nclient_secret_file = "secret"')), '[federation.upstream_idps.corp].client_secret_file', /not both/);
  rejected(noKey(idp('token_endpoint_auth_method = "none"\nclient_secret = "a"')), '[federation.upstream_idps.corp].client_secret', /only used with client_secret_post/);
  rejected(idp('authorization_endpoint = "https://sso.partner.test/auth"'), '[federation.upstream_idps.corp].token_endpoint', /required when authorization_endpoint/);
  rejected(idp('authorization_endpoint = "https://a.test/a"\ntoken_endpoint = "https://a.test/t"'), '[federation.upstream_idps.corp].userinfo_endpoint', /plain OAuth2/);
  rejected(idp('jwks_uri = "https://a.test/jwks"'), '[federation.upstream_idps.corp].jwks_uri', /only used together with authorization_endpoint/);
  rejected(idp('callback_path = "/ui/login"'), '[federation.upstream_idps.corp].callback_path', /used by Kanidm or the issuer/);
  rejected(idp('callback_path = "/oauth2/token"'), '[federation.upstream_idps.corp].callback_path', /used by Kanidm or the issuer/);
  rejected(idp('callback_path = "cb"'), '[federation.upstream_idps.corp].callback_path', /absolute path/);
  rejected(idp('callback_path = "/cb"') + idp('callback_path = "/cb"', 'other'), '[federation.upstream_idps.other].callback_path', /already the callback of "corp"/);
  rejected(idp('link_by_verified_email = "yes"'), '[federation.upstream_idps.corp].link_by_verified_email', /true or false/);
  rejected(idp('scopes = ["openid", "openid"]'), '[federation.upstream_idps.corp].scopes', /duplicates/);
  rejected('federation = 3', 'federation', /expected a table/);
});

test('files: keys and secret files must be owner-only and exist', () => {
  const noKey = (s: string) => s.replace('private_key_path = "client.pem"', '');
  rejected(idp().replace('client.pem', 'missing.pem'), '[federation.upstream_idps.corp].private_key_path', /does not exist/);
  rejected(idp().replace('client.pem', 'open-secret'), '[federation.upstream_idps.corp].private_key_path', /readable by group\/others \(mode 0644\)/);
  rejected(noKey(idp('token_endpoint_auth_method = "client_secret_basic"\nclient_secret_file = "open-secret"')),
    '[federation.upstream_idps.corp].client_secret_file', /chmod 600/);
  rejected('[federation]\nca_file = "nope.pem"', '[federation].ca_file', /does not exist/);
});
