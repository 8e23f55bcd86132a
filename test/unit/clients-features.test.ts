// Clients-file keys for the issuer's optional surface: device flow grant,
// back-channel logout URI, PAR and DPoP requirements; and their CLI options.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runClientCli } from './harness/client-cli.js';
import { clientMetadata } from '../../wrapper/src/clients/clients-source.js';
import { ClientError } from '../../wrapper/src/clients/client-errors.js';
import { DEVICE_CODE_GRANT } from '../../wrapper/src/clients/client-record.js';
import { formatClients, loadClients, parseClients } from '../../wrapper/src/clients/clients-file.js';
import { validateClient } from '../../wrapper/src/clients/validate-client.js';

let dir: string;
before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-clients-features-'))));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const rejects = (raw: object, key: string, re: RegExp) =>
  assert.throws(() => validateClient(raw), (e: unknown) => e instanceof ClientError && e.key === key && re.test(e.problem));

test('a device-flow CLI client: public, device grant (+ refresh), no redirect URIs', () => {
  const c = validateClient({ client_id: 'kiwi-cli', token_endpoint_auth_method: 'none', grant_types: [DEVICE_CODE_GRANT, 'refresh_token'] });
  assert.deepEqual(c.redirect_uris, []);
  const m = clientMetadata(c);
  assert.deepEqual(m.grant_types, [DEVICE_CODE_GRANT, 'refresh_token']);
  assert.deepEqual(m.response_types, []);
  rejects({ client_id: 'x-cli', grant_types: ['refresh_token'] }, 'grant_types', /requires authorization_code or urn:ietf/);
});

test('backchannel_logout_uri, require_pushed_authorization_requests, dpop_bound_access_tokens', () => {
  const raw = { client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/cb'], token_endpoint_auth_method: 'none', backchannel_logout_uri: 'https://mail.kiwi.test/logout', require_pushed_authorization_requests: true, dpop_bound_access_tokens: true };
  const c = validateClient(raw);
  const m = clientMetadata(c);
  assert.equal(m.backchannel_logout_uri, 'https://mail.kiwi.test/logout');
  assert.equal(m.backchannel_logout_session_required, true);
  assert.equal(m.require_pushed_authorization_requests, true);
  assert.equal(m.dpop_bound_access_tokens, true);
  // Round trip through the file format.
  assert.deepEqual(parseClients(formatClients([c]), 'x.toml'), [c]);

  rejects({ ...raw, backchannel_logout_uri: 'http://mail.kiwi.test/logout' }, 'backchannel_logout_uri', /https/);
  rejects({ ...raw, backchannel_logout_uri: 'https://mail.kiwi.test/logout#x' }, 'backchannel_logout_uri', /fragment/);
  rejects({ ...raw, dpop_bound_access_tokens: 'yes' }, 'dpop_bound_access_tokens', /true or false/);
  rejects({ client_id: 'svc', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', require_pushed_authorization_requests: true }, 'require_pushed_authorization_requests', /authorization_code/);
});

const cli = runClientCli;

test('kiwi-id client add/update: --grant device_code, --backchannel-logout-uri, --require-par, --dpop', async () => {
  const file = path.join(dir, 'clients.toml');
  const a = await cli(file, 'add', 'kiwi-cli', '--public', '--grant', 'device_code', 'refresh_token');
  assert.equal(a.code, 0, a.stderr);
  assert.deepEqual(loadClients(file)[0]!.grant_types, [DEVICE_CODE_GRANT, 'refresh_token']);

  const b = await cli(file, 'add', 'kiwi-notes', '--redirect-uri', 'https://notes.kiwi.test/cb', '--backchannel-logout-uri', 'https://notes.kiwi.test/logout', '--require-par', '--dpop');
  assert.equal(b.code, 0, b.stderr);
  let notes = loadClients(file).find((c) => c.client_id === 'kiwi-notes')!;
  assert.equal(notes.backchannel_logout_uri, 'https://notes.kiwi.test/logout');
  assert.equal(notes.require_pushed_authorization_requests, true);
  assert.equal(notes.dpop_bound_access_tokens, true);

  const u = await cli(file, 'update', 'kiwi-notes', '--clear-backchannel-logout-uri', '--no-require-par', '--no-dpop');
  assert.equal(u.code, 0, u.stderr);
  notes = loadClients(file).find((c) => c.client_id === 'kiwi-notes')!;
  assert.equal(notes.backchannel_logout_uri, undefined);
  assert.equal(notes.require_pushed_authorization_requests, false);
  assert.equal(notes.dpop_bound_access_tokens, false);

  const bad = await cli(file, 'update', 'kiwi-notes', '--backchannel-logout-uri', 'http://notes.kiwi.test/x');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /client\[kiwi-notes\]\.backchannel_logout_uri: .*https/);
});
