// `kiwi-id session list|revoke` over a state store: sessions found by sub or
// Kanidm name; revoking deletes the session and its grants and marks the
// watch so the running issuer sends the logout tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { registerSessionCommands } from '../../wrapper/src/cli/session.js';
import { Accounts } from '../../wrapper/src/oidc/accounts.js';
import { SESSION_WATCH_MODEL, SessionWatch } from '../../wrapper/src/oidc/logout/session-watch.js';
import { SqliteStateStore } from '../../wrapper/src/state/store.js';

let dir: string;
let store: SqliteStateStore;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-session-cli-'));
  store = new SqliteStateStore({ dataDir: dir });
});
after(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function run(...args: string[]): Promise<string> {
  let out = '';
  const program = new Command('kiwi-id').exitOverride();
  // The commands close the store they open: hand them a fresh one each time.
  registerSessionCommands(program, () => new SqliteStateStore({ dataDir: dir }));
  const write = process.stdout.write;
  process.stdout.write = ((c: string) => ((out += c), true)) as typeof process.stdout.write;
  try {
    await program.parseAsync(['session', ...args], { from: 'user' });
  } finally {
    process.stdout.write = write;
  }
  return out;
}

test('list and revoke by Kanidm name', async () => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  await new Accounts(store, 3600).save({ sub: 'u-1', preferred_username: 'alice@idm.kiwi.test' });
  await new Accounts(store, 3600).save({ sub: 'u-2', preferred_username: 'bob@idm.kiwi.test' });
  const watch = new SessionWatch(store, () => {}, pino({ enabled: false }));
  await watch.track('s-alice', { accountId: 'u-1', exp, authorizations: { 'kiwi-mail': { sid: 'sid-1', grantId: 'g-1' } } }, 3600);
  await watch.track('s-bob', { accountId: 'u-2', exp, authorizations: { 'kiwi-chat': { sid: 'sid-2', grantId: 'g-2' } } }, 3600);
  await store.upsert('Session', 's-alice', { accountId: 'u-1' }, 3600);
  await store.upsert('RefreshToken', 'rt-1', { grantId: 'g-1' }, 3600);

  const listed = (await run('list')).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(listed.map((l) => l.sub).sort(), ['u-1', 'u-2']);
  assert.deepEqual(JSON.parse((await run('list', '--user', 'alice')).trim()).clients, ['kiwi-mail']);

  assert.match(await run('revoke', 'alice'), /ended 1 session\(s\) of alice.*kiwi-mail/);
  assert.equal(await store.find('Session', 's-alice'), undefined);
  assert.equal(await store.find('RefreshToken', 'rt-1'), undefined, 'the grant is revoked');
  assert.equal((await store.find(SESSION_WATCH_MODEL, 's-alice'))?.payload.ended, 'admin');
  assert.ok(await store.find(SESSION_WATCH_MODEL, 's-bob'), 'bob untouched');
  assert.match(await run('revoke', 'alice'), /no live session of alice/);

  // The running issuer's check sends alice's logout token (and only hers).
  const told: string[] = [];
  const issuerSide = new SessionWatch(store, (client, sub, sid, why) => told.push(`${client} ${sub} ${sid} ${why}`), pino({ enabled: false }));
  assert.equal(await issuerSide.check(), 1);
  assert.deepEqual(told, ['kiwi-mail u-1 sid-1 admin']);
  assert.equal(await issuerSide.check(), 0, 'once');
});
