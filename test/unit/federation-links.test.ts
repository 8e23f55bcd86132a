// The link store on the SQLite state store: stable ids derived from the
// upstream identity, conflicts refused, use recorded, links survive restarts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LinkConflictError, linkId, LinkStore } from '../../wrapper/src/federation/links.js';
import { SqliteStateStore } from '../../wrapper/src/state/store.js';

let dir: string;
before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-links-'))));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const A = { issuer: 'https://a.test', idp: 'a', upstream_sub: 'u1', person: 'p-1', person_name: 'alice', how: 'admin' as const };

test('ids are the same on every node for one upstream identity, different for another', () => {
  assert.equal(linkId('https://a.test', 'u1'), linkId('https://a.test', 'u1'));
  assert.notEqual(linkId('https://a.test', 'u1'), linkId('https://b.test', 'u1'));
  // The separator keeps ("ab", "c") and ("a", "bc") apart.
  assert.notEqual(linkId('ab', 'c'), linkId('a', 'bc'));
});

test('link, conflict, touch, list and unlink; links survive a restart and name their node', async () => {
  let t = 1_000;
  let store = new SqliteStateStore({ dataDir: dir, nodeId: 'node-a' });
  let links = new LinkStore(store, () => t);
  const { link, created } = await links.link(A);
  assert.equal(created, true);
  assert.deepEqual(link, { ...A, id: linkId(A.issuer, A.upstream_sub), created_at: 1000, updated_at: 1000, last_used_at: null, node: 'node-a' });
  assert.equal((await links.link(A)).created, false, 'the same link again is kept');
  await assert.rejects(links.link({ ...A, person: 'p-2' }), LinkConflictError);
  t = 5_000;
  await links.touch(link);
  await links.link({ ...A, issuer: 'https://b.test', idp: 'b', upstream_sub: 'u0' });
  await store.close();

  store = new SqliteStateStore({ dataDir: dir, nodeId: 'node-b' });
  links = new LinkStore(store, () => t);
  const again = await links.find(A.issuer, 'u1');
  assert.equal(again?.last_used_at, 5000);
  assert.equal(again?.updated_at, 5000);
  assert.equal(again?.created_at, 1000);
  t = 9_000;
  await links.touch(again!);
  const touched = await links.find(A.issuer, 'u1');
  assert.equal(touched?.last_used_at, 9000);
  assert.equal(touched?.node, 'node-a', 'the node that made the link, even after another node used it');
  assert.deepEqual((await links.list()).map((l) => l.idp), ['a', 'b']);
  assert.equal((await links.unlink(A.issuer, 'u1'))?.person, 'p-1');
  assert.equal(await links.find(A.issuer, 'u1'), undefined);
  assert.equal(await links.unlink(A.issuer, 'u1'), undefined);
  await store.close();
});
