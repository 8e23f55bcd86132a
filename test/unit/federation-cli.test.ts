// `kiwi-id federation link|unlink|list|jwks`, in-process with captured
// output, against a real state store; the person lookup is a fixed table
// here (Kanidm's, through the reader account, in test/integration).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerFederationCommands } from '../../wrapper/src/cli/federation.js';
import { loadConfig } from '../../wrapper/src/config/config.js';
import type { Person, PersonDirectory } from '../../wrapper/src/federation/directory.js';
import { LinkStore } from '../../wrapper/src/federation/links.js';
import { SqliteStateStore } from '../../wrapper/src/state/store.js';

let dir: string;
let configFile: string;
const ALICE: Person = { uuid: '7d0e2b7c-7c6e-4a2b-9d55-7a1a1f0e0a11', name: 'alice', spn: 'alice@idm.kiwi.test', mails: [], groups: [], valid: true };
const directory: PersonDirectory = {
  person: async (id) => ([ALICE.uuid, ALICE.name, ALICE.spn].includes(id) ? ALICE : undefined),
  personsWithEmail: async () => [],
};

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-fedcli-'));
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  fs.writeFileSync(path.join(dir, 'corp.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  configFile = path.join(dir, 'config.toml');
  fs.writeFileSync(configFile, [
    'listen_addr = "127.0.0.1:8443"', 'tls_cert = "x"', 'tls_key = "x"', 'data_dir = "data"',
    '[federation]', 'trusted_issuers = ["https://assertions.partner.test"]',
    '[[federation.upstream_idps]]', 'id = "corp"', 'issuer = "https://sso.partner.test"', 'client_id = "kiwi"', 'private_key_path = "corp.pem"',
    '[[federation.upstream_idps]]', 'id = "gh"', 'issuer = "https://github.com"', 'client_id = "x"', 'token_endpoint_auth_method = "none"',
  ].join('\n'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const program = new Command('kiwi-id').exitOverride().configureOutput({ writeOut: (s) => void (stdout += s), writeErr: (s) => void (stderr += s) });
  registerFederationCommands(program, {
    config: () => loadConfig(configFile, { checkFiles: false }),
    directory: () => directory,
    onExit: (err) => {
      throw err;
    },
  });
  try {
    await program.parseAsync(['node', 'kiwi-id', 'federation', ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return { code: e.exitCode, stdout, stderr };
  }
}

async function links() {
  const store = new SqliteStateStore({ dataDir: path.join(dir, 'data') });
  try {
    return await new LinkStore(store).list();
  } finally {
    await store.close();
  }
}

test('link by person name, list shows created / last used, unlink removes it', async () => {
  const r = await run('link', 'corp', 'bob@PARTNER', 'alice');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /linked corp "bob@PARTNER" to alice \(7d0e2b7c-/);
  const [l] = await links();
  assert.equal(l?.issuer, 'https://sso.partner.test');
  assert.equal(l?.person, ALICE.uuid);
  assert.equal(l?.how, 'admin');
  assert.equal(l?.node, 'local');

  const again = await run('link', 'corp', 'bob@PARTNER', ALICE.uuid);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /already linked/);

  const list = await run('list');
  assert.match(list.stdout, /^IDP\s+UPSTREAM_SUB\s+PERSON\s+HOW\s+CREATED\s+LAST_USED\s+NODE$/m);
  assert.match(list.stdout, /corp\s+bob@PARTNER\s+alice \(7d0e2b7c-[^)]+\)\s+admin\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+-\s+local/);
  const json = await run('list', '--json', '--idp', 'corp');
  assert.equal(JSON.parse(json.stdout.trim()).upstream_sub, 'bob@PARTNER');
  assert.equal((await run('list', '--idp', 'gh')).stdout, 'no links\n');

  const un = await run('unlink', 'corp', 'bob@PARTNER');
  assert.equal(un.code, 0);
  assert.match(un.stdout, /unlinked corp "bob@PARTNER" from alice/);
  assert.deepEqual(await links(), []);
});

test('a trusted issuer URL is an IdP for links (JWT-bearer subjects)', async () => {
  const r = await run('link', 'https://assertions.partner.test', 'svc-42', 'alice');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await links())[0]?.issuer, 'https://assertions.partner.test');
  await run('unlink', 'https://assertions.partner.test', 'svc-42');
});

test('errors: unknown IdP or person, conflicting link, missing link, usage', async () => {
  const unknown = await run('link', 'nope', 'x', 'alice');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown IdP "nope" \(configured: corp, gh, https:\/\/assertions.partner.test\)/);
  const noPerson = await run('link', 'corp', 'x', 'mallory');
  assert.equal(noPerson.code, 1);
  assert.match(noPerson.stderr, /no Kanidm person "mallory"/);
  assert.deepEqual(await links(), []);

  await run('link', 'corp', 'x', 'alice');
  const store = new SqliteStateStore({ dataDir: path.join(dir, 'data') });
  await new LinkStore(store).unlink('https://sso.partner.test', 'x');
  await new LinkStore(store).link({ issuer: 'https://sso.partner.test', idp: 'corp', upstream_sub: 'x', person: 'someone-else', how: 'admin' });
  await store.close();
  const conflict = await run('link', 'corp', 'x', 'alice');
  assert.equal(conflict.code, 1);
  assert.match(conflict.stderr, /already linked to another person .* unlink it first: kiwi-id federation unlink corp x/);

  const missing = await run('unlink', 'corp', 'never');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no link for corp "never"/);
  assert.equal((await run('link', 'corp')).code, 2);
});

test('jwks prints the public key an upstream registers for private_key_jwt; never private members', async () => {
  const r = await run('jwks', 'corp');
  assert.equal(r.code, 0, r.stderr);
  const jwks = JSON.parse(r.stdout) as { keys: Array<Record<string, string>> };
  assert.equal(jwks.keys[0]!.kty, 'EC');
  assert.equal(jwks.keys[0]!.alg, 'ES256');
  assert.ok(jwks.keys[0]!.kid);
  assert.equal(jwks.keys[0]!.d, undefined);
  assert.equal((await run('jwks', 'gh')).code, 2);
});
