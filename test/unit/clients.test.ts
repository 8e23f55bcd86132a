import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, scryptSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClientError, ClientsFileError, UnknownClientError } from '../../wrapper/src/clients/client-errors.js';
import { addClient, removeClient, rotateSecret } from '../../wrapper/src/clients/client-list.js';
import type { ClientRecord } from '../../wrapper/src/clients/client-record.js';
import { generateSecret, hashSecret, isSecretHash, verifySecret, verifySecretAsync } from '../../wrapper/src/clients/client-secret.js';
import { loadClients, saveClients } from '../../wrapper/src/clients/clients-file.js';

let dir: string;
let counter = 0;
let sampleHash: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-clients-'));
  sampleHash = hashSecret('sample-secret');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(text: string): string {
  const file = path.join(dir, `clients-${++counter}.toml`);
  fs.writeFileSync(file, text);
  return file;
}

/** A valid confidential client table (TOML lines), with overrides appended. */
function confidential(id: string, extra: string[] = []): string {
  return ['[[client]]', `client_id = "${id}"`, 'redirect_uris = ["https://mail.example.com/cb"]', `client_secret_hash = "${sampleHash}"`, ...extra].join('\n');
}

function loadError(text: string): ClientsFileError {
  const file = write(text);
  try {
    loadClients(file);
  } catch (e) {
    assert.ok(e instanceof ClientsFileError, `expected ClientsFileError, got ${String(e)}`);
    assert.equal(e.message.split('\n').length, 1, 'message must be one line');
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    return e;
  }
  assert.fail(`loading should fail:\n${text}`);
}

test('missing file loads as an empty list', () => {
  assert.deepEqual(loadClients(path.join(dir, 'does-not-exist.toml')), []);
});

test('defaults are filled in', () => {
  const [c] = loadClients(write(confidential('kiwi-mail')));
  assert.ok(c);
  assert.equal(c.token_endpoint_auth_method, 'client_secret_basic');
  assert.deepEqual(c.grant_types, ['authorization_code', 'refresh_token']);
  assert.deepEqual(c.scopes, ['openid', 'profile', 'email', 'groups', 'offline_access']);
  assert.deepEqual(c.post_logout_redirect_uris, []);
  assert.equal(c.allowed_groups, undefined);
});

test('round trip: add, save, load; mode 0600, hash stored, plaintext absent', () => {
  const file = path.join(dir, 'sub', 'roundtrip.toml');
  const a = addClient([], {
    client_id: 'kiwi-mail',
    client_name: 'Kiwi Mail',
    redirect_uris: ['https://mail.example.com/oidc/callback', 'http://127.0.0.1:8080/cb'],
    post_logout_redirect_uris: ['https://mail.example.com/'],
    allowed_groups: ['mail-users'],
  });
  assert.ok(a.secret);
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const b = addClient(a.clients, {
    client_id: 'kiwi-files',
    redirect_uris: ['https://files.example.com/cb'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1' }] },
  });
  assert.equal(b.secret, undefined);
  const c = addClient(b.clients, { client_id: 'kiwi-spa', redirect_uris: ['http://localhost:5173/cb'], token_endpoint_auth_method: 'none' });
  assert.equal(c.secret, undefined);

  saveClients(file, c.clients);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const text = fs.readFileSync(file, 'utf8');
  assert.match(text, /^# /, 'header comment');
  assert.ok(!text.includes(a.secret), 'plaintext secret must not be stored');
  const loaded = loadClients(file);
  assert.deepEqual(loaded, c.clients);
  const mail = loaded.find((x) => x.client_id === 'kiwi-mail')!;
  assert.ok(text.includes(mail.client_secret_hash!), 'hash is stored');
  assert.ok(verifySecret(a.secret, mail.client_secret_hash!));
  assert.equal(loaded.find((x) => x.client_id === 'kiwi-spa')!.client_secret_hash, undefined);
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['roundtrip.toml'], 'no temp files left behind');

  // Overwriting keeps 0600 even if someone loosened the mode.
  fs.chmodSync(file, 0o644);
  saveClients(file, removeClient(loaded, 'kiwi-files'));
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(loadClients(file).map((x) => x.client_id), ['kiwi-mail', 'kiwi-spa']);
});

test('validation failures name file, client and key in one line', () => {
  const cases: [text: string, where: string, problem: RegExp][] = [
    [confidential('kiwi-mail', ['colour = "blue"']), 'client[kiwi-mail].colour', /unknown key/],
    [
      confidential('kiwi-mail').replace('https://mail.example.com/cb', 'http://mail.example.com/cb'),
      'client[kiwi-mail].redirect_uris',
      /https/,
    ],
    [confidential('kiwi-mail').replace('/cb"', '/cb#frag"'), 'client[kiwi-mail].redirect_uris', /fragment/],
    [confidential('kiwi-mail').replace('/cb"', '/*"'), 'client[kiwi-mail].redirect_uris', /wildcard/],
    [confidential('kiwi-mail') + '\n' + confidential('kiwi-mail'), 'client[kiwi-mail].client_id', /duplicate/],
    [
      ['[[client]]', 'client_id = "kiwi-spa"', 'redirect_uris = ["https://spa.example.com/cb"]', 'token_endpoint_auth_method = "none"', `client_secret_hash = "${sampleHash}"`].join('\n'),
      'client[kiwi-spa].client_secret_hash',
      /not allowed/,
    ],
    [
      ['[[client]]', 'client_id = "kiwi-jwt"', 'redirect_uris = ["https://jwt.example.com/cb"]', 'token_endpoint_auth_method = "private_key_jwt"'].join('\n'),
      'client[kiwi-jwt].jwks',
      /required/,
    ],
    [['[[client]]', 'client_id = "kiwi-x"', 'redirect_uris = ["https://x.example.com/cb"]'].join('\n'), 'client[kiwi-x].client_secret_hash', /required/],
    [confidential('kiwi-mail').replace(sampleHash, 'plaintext-secret'), 'client[kiwi-mail].client_secret_hash', /not a hash/],
    [confidential('kiwi-mail', ['grant_types = ["implicit"]']), 'client[kiwi-mail].grant_types', /not one of/],
    [confidential('kiwi-mail', ['client_name = 42']), 'client[kiwi-mail].client_name', /expected a string, got integer/],
    [confidential('Kiwi Mail'), 'client[0].client_id', /must match/],
    [confidential('ok-client') + '\n[[client]]\nclient_name = "x"', 'client[1].client_id', /required/],
    [confidential('kiwi-mail', ['token_endpoint_auth_method = "client_secret_jwt"']), 'client[kiwi-mail].token_endpoint_auth_method', /not one of/],
    [confidential('kiwi-mail', ['allowed_groups = "admins"']), 'client[kiwi-mail].allowed_groups', /expected an array/],
  ];
  for (const [text, where, problem] of cases) {
    const e = loadError(text);
    assert.ok(e.message.includes(`: ${where}: `), `${where} not in: ${e.message}`);
    assert.match(e.message, problem);
  }
});

test('whole-file problems: bad TOML and unknown top-level key', () => {
  assert.match(loadError('[[client]\n').message, /invalid TOML/);
  assert.match(loadError('clients = []').message, /: clients: unknown key/);
});

test('loopback http redirect URIs are allowed, other schemes are not', () => {
  const ok = (uri: string) => addClient([], { client_id: 'kiwi-cli', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
  ok('http://localhost:8080/cb');
  ok('http://127.0.0.1/cb');
  for (const bad of ['http://localhost.evil.com/cb', 'ftp://x.example.com/cb', 'relative/cb', 'https://user:pw@x.example.com/cb']) {
    assert.throws(() => ok(bad), (e: unknown) => e instanceof ClientError && e.key === 'redirect_uris', bad);
  }
});

test('private_key_jwt rejects private key material in jwks', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  assert.throws(
    () =>
      addClient([], {
        client_id: 'kiwi-jwt',
        redirect_uris: ['https://x.example.com/cb'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [privateKey.export({ format: 'jwk' })] },
      }),
    /client\[kiwi-jwt\]\.jwks: .*private key material/,
  );
});

test('verifySecret: true, false, malformed never throws (sha256 for generated secrets)', async () => {
  const secret = generateSecret();
  assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
  const hash = hashSecret(secret);
  assert.equal(hash, 'sha256$' + createHash('sha256').update(secret).digest('base64url'));
  assert.equal(isSecretHash(hash), true);
  assert.equal(verifySecret(secret, hash), true);
  assert.equal(await verifySecretAsync(secret, hash), true);
  assert.equal(verifySecret(secret + 'x', hash), false);
  assert.equal(verifySecret('', hash), false);
  assert.equal(await verifySecretAsync('wrong', hash), false);
  const malformed = ['', 'garbage', hash.replace('sha256$', 'sha1$'), hash + 'A', hash.slice(0, -2), 'sha256$not base64!'];
  for (const m of malformed) {
    assert.equal(verifySecret(secret, m), false, m);
    assert.equal(await verifySecretAsync(secret, m), false, m);
  }
  assert.equal(verifySecret(secret, undefined as unknown as string), false);
  assert.equal(verifySecret(undefined as unknown as string, hash), false);
});

test('legacy scrypt hashes (written by earlier versions) still verify; tampered parameters are refused', async () => {
  const secret = generateSecret();
  const salt = randomBytes(16);
  const derived = scryptSync(secret, salt, 32, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  const hash = ['scrypt', 32768, 8, 1, salt.toString('base64url'), derived.toString('base64url')].join('$');
  assert.equal(isSecretHash(hash), true);
  assert.equal(verifySecret(secret, hash), true);
  assert.equal(await verifySecretAsync(secret, hash), true);
  assert.equal(await verifySecretAsync(secret + 'x', hash), false);
  const parts = hash.split('$');
  const malformed = [
    hash.replace('scrypt$', 'bcrypt$'),
    hash + '$extra',
    [...parts.slice(0, 1), '1000', ...parts.slice(2)].join('$'), // N not a power of two
    [...parts.slice(0, 1), '0', ...parts.slice(2)].join('$'),
    [...parts.slice(0, 1), '1073741824', ...parts.slice(2)].join('$'), // absurd memory
    [...parts.slice(0, 2), '-8', ...parts.slice(3)].join('$'),
    [...parts.slice(0, 4), 'not base64!', parts[5]].join('$'),
    [...parts.slice(0, 5), ''].join('$'),
    [...parts.slice(0, 4), 'c2hvcnQ', parts[5]].join('$'), // salt too short
  ];
  for (const m of malformed) {
    assert.equal(verifySecret(secret, m), false, m);
    assert.equal(await verifySecretAsync(secret, m), false, m);
  }
});

test('rotateSecret changes the hash and the old secret stops verifying', () => {
  const a = addClient([], { client_id: 'kiwi-mail', redirect_uris: ['https://mail.example.com/cb'] });
  const before: ClientRecord = a.clients[0]!;
  const r = rotateSecret(a.clients, 'kiwi-mail');
  const after: ClientRecord = r.clients[0]!;
  assert.notEqual(after.client_secret_hash, before.client_secret_hash);
  assert.notEqual(r.secret, a.secret);
  assert.equal(verifySecret(a.secret!, after.client_secret_hash!), false);
  assert.equal(verifySecret(r.secret, after.client_secret_hash!), true);
  assert.equal(a.clients[0], before, 'input list is not mutated');
  assert.throws(() => rotateSecret(a.clients, 'nope'), UnknownClientError);
  const pub = addClient([], { client_id: 'kiwi-spa', redirect_uris: ['https://spa.example.com/cb'], token_endpoint_auth_method: 'none' });
  assert.throws(() => rotateSecret(pub.clients, 'kiwi-spa'), /no secret to rotate/);
});

test('addClient / removeClient errors', () => {
  const a = addClient([], { client_id: 'kiwi-mail', redirect_uris: ['https://mail.example.com/cb'] });
  assert.throws(
    () => addClient(a.clients, { client_id: 'kiwi-mail', redirect_uris: ['https://other.example.com/cb'] }),
    (e: unknown) => e instanceof ClientError && e.key === 'client_id' && /already exists/.test(e.message),
  );
  assert.throws(() => addClient([], { client_id: 'kiwi-mail' }), /redirect_uris: at least one/);
  assert.throws(
    () => addClient([], { client_id: 'x', redirect_uris: ['https://x.example.com/cb'], client_secret_hash: sampleHash } as never),
    /client_secret_hash: is generated/,
  );
  assert.throws(() => removeClient(a.clients, 'nope'), UnknownClientError);
  assert.deepEqual(removeClient(a.clients, 'kiwi-mail'), []);
  assert.equal(a.clients.length, 1, 'input list is not mutated');
});
