// The replica database: persistence across reopen (what `kill -9` leaves), deltas by local log
// position, no echo of a peer's own rows, peer positions that never move backwards, expiry and
// tombstone collection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReplicaDb } from '../../wrapper/src/cluster/replica-db.js';
import { compareHlc } from '../../wrapper/src/cluster/hlc.js';

function tmp() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-replica-'));
}

test('a reopened replica has its rows, log position, epoch and clock (nothing lost, nothing reused)', () => {
  const dir = tmp();
  try {
    const a = new ReplicaDb({ dir, node: 'n1' });
    a.localSet('client', 'x', { n: 1 });
    a.localSet('client', 'y', { n: 2 });
    a.localRemove('client', 'y');
    const { epoch, maxSeq } = a;
    const last = a.clock.last;
    a.close();
    assert.equal(fs.statSync(path.join(dir, 'cluster.db')).mode & 0o777, 0o600);
    const b = new ReplicaDb({ dir, node: 'n1', now: () => 0 }); // even with a clock far behind
    assert.equal(b.epoch, epoch);
    assert.equal(b.maxSeq, maxSeq);
    assert.deepEqual(b.value('client', 'x'), { n: 1 });
    assert.equal(b.value('client', 'y'), undefined);
    assert.ok(compareHlc(b.clock.tick(), last) > 0, 'timestamps continue after the last one used');
    b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('deltas page through the log; rows that came from a peer are not sent back to it', () => {
  const d1 = tmp();
  const d2 = tmp();
  try {
    const n1 = new ReplicaDb({ dir: d1, node: 'n1' });
    const n2 = new ReplicaDb({ dir: d2, node: 'n2' });
    for (let i = 0; i < 5; i++) n1.localSet('client', `c${i}`, { i });
    const p1 = n1.since(0, 2, 'n2');
    assert.equal(p1.items.length, 2);
    assert.equal(p1.more, true);
    const p2 = n1.since(p1.upto, 10, 'n2');
    assert.equal(p2.items.length, 3);
    assert.equal(p2.more, false);
    assert.equal(p2.upto, n1.maxSeq);
    n2.mergeRemote('n1', [...p1.items, ...p2.items], undefined, { epoch: n1.epoch, seq: p2.upto });
    assert.equal(n2.peer('n1').recv_seq, n1.maxSeq);
    // n2 relays them to others, but not back to n1.
    assert.equal(n2.since(0, 100, 'n1').items.length, 0);
    assert.equal(n2.since(0, 100, 'n3').items.length, 5);
    assert.equal(n2.lagSince(0, 'n1').entries, 0);
    // A local change on n2 goes to n1 again.
    n2.localSet('client', 'c0', { i: 'changed' });
    assert.deepEqual(n2.since(0, 100, 'n1').items.map((x) => x.key), ['c0']);
    // An older position of the same log does not move the watermark back.
    n2.mergeRemote('n1', [], undefined, { epoch: n1.epoch, seq: 1 });
    assert.equal(n2.peer('n1').recv_seq, n1.maxSeq);
    n1.close();
    n2.close();
  } finally {
    fs.rmSync(d1, { recursive: true, force: true });
    fs.rmSync(d2, { recursive: true, force: true });
  }
});

test('expired records and old tombstones are collected; a dead record from a peer is not stored', () => {
  const dir = tmp();
  let now = 1_000_000;
  try {
    const db = new ReplicaDb({ dir, node: 'n1', now: () => now });
    db.defineKind<{ exp: number }>('state', { expiresAt: (v) => v.exp, finalRemove: true });
    db.localSet('state', 'live', { exp: now + 10_000 });
    db.localSet('state', 'short', { exp: now + 100 });
    db.localSet('client', 'gone', { n: 1 });
    db.localRemove('client', 'gone');
    now += 1_000;
    assert.equal(db.value('state', 'short'), undefined, 'expired is invisible at once');
    assert.equal(db.gc(60_000), 1, 'the expired record');
    now += 120_000;
    assert.equal(db.gc(60_000), 2, 'the old tombstone and the now expired record');
    const otherDir = tmp();
    const other = new ReplicaDb({ dir: otherDir, node: 'n2', now: () => now });
    other.defineKind<{ exp: number }>('state', { expiresAt: (v) => v.exp });
    other.localSet('state', 'dead', { exp: now - 1 });
    const changes = db.mergeRemote('n2', other.since(0, 10, 'n1').items);
    assert.equal(changes.length, 0);
    assert.equal(db.get('state', 'dead'), undefined);
    other.close();
    fs.rmSync(otherDir, { recursive: true, force: true });
    db.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
