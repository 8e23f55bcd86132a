// The replicated map's laws (commutative, associative, idempotent merge; convergence under any
// delivery order and duplication) checked as properties over random operation histories, plus
// the observed-remove and tombstone rules by example; and the hybrid logical clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  EMPTY, canonical, checkState, equal, isPresent, merge, remove, set, tombstoneExpired, valueOf, type KeyState, type KindPolicy,
} from '../../wrapper/src/cluster/crdt.js';
import { ClockDriftError, HybridClock, compareHlc, decodeHlc, encodeHlc } from '../../wrapper/src/cluster/hlc.js';

type V = { n: number; consumedAt?: number | null };
const NODES = ['n1', 'n2', 'n3'];
const consumed: KindPolicy<V> = {
  combine: (newest, other) => {
    const c = [newest.consumedAt, other.consumedAt].filter((x): x is number => typeof x === 'number');
    return { ...newest, consumedAt: c.length ? Math.min(...c) : (newest.consumedAt ?? null) };
  },
};

/** A random history: each node applies local sets/removes on its own replica, with occasional syncs. */
const opArb = fc.oneof(
  fc.record({ op: fc.constant('set' as const), node: fc.constantFrom(...NODES), n: fc.integer({ min: 0, max: 9 }), c: fc.option(fc.integer({ min: 1, max: 99 }), { nil: undefined }) }),
  fc.record({ op: fc.constant('remove' as const), node: fc.constantFrom(...NODES) }),
  fc.record({ op: fc.constant('sync' as const), from: fc.constantFrom(...NODES), to: fc.constantFrom(...NODES) }),
);

function run(ops: Array<Record<string, any>>): { states: KeyState<V>[]; replicas: Record<string, KeyState<V>> } {
  let wall = 1_000;
  const clocks = Object.fromEntries(NODES.map((n) => [n, new HybridClock(n, () => wall)]));
  const replicas: Record<string, KeyState<V>> = Object.fromEntries(NODES.map((n) => [n, EMPTY as KeyState<V>]));
  const states: KeyState<V>[] = [];
  for (const o of ops) {
    wall += 1;
    if (o.op === 'set') {
      const v: V = { n: o.n, ...(o.c !== undefined ? { consumedAt: o.c } : {}) };
      replicas[o.node] = set(replicas[o.node]!, v, clocks[o.node]!.tick(), o.node);
    } else if (o.op === 'remove') {
      replicas[o.node] = remove(replicas[o.node]!, clocks[o.node]!.tick());
    } else {
      replicas[o.to] = merge(replicas[o.to]!, replicas[o.from]!);
    }
    for (const n of NODES) states.push(replicas[n]!);
  }
  return { states, replicas };
}

const statesArb = fc.array(opArb, { maxLength: 30 }).map((ops) => run(ops).states);

test('merge is commutative, associative and idempotent over states from random histories', () => {
  fc.assert(
    fc.property(statesArb, fc.nat(), fc.nat(), fc.nat(), (states, i, j, k) => {
      if (states.length === 0) return;
      const a = states[i % states.length]!;
      const b = states[j % states.length]!;
      const c = states[k % states.length]!;
      assert.ok(equal(merge(a, b), merge(b, a)), 'commutative');
      assert.ok(equal(merge(merge(a, b), c), merge(a, merge(b, c))), 'associative');
      assert.ok(equal(merge(a, a), a), 'idempotent');
      // The visible value is a function of the state, so equal states show equal values.
      assert.equal(canonical(valueOf(merge(a, b), consumed)), canonical(valueOf(merge(b, a), consumed)));
    }),
    { numRuns: 300 },
  );
});

test('replicas converge whatever order and how often the updates are delivered', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 30 }), fc.array(fc.nat(), { minLength: 1, maxLength: 40 }), (ops, order) => {
      const { replicas } = run(ops);
      const finals = NODES.map((n) => replicas[n]!);
      // Deliver all final states to a fresh replica in a random order with repetitions.
      const mixed = order.map((i) => finals[i % finals.length]!);
      let x: KeyState<V> = EMPTY as KeyState<V>;
      for (const s of [...mixed, ...finals]) x = merge(x, s);
      let y: KeyState<V> = EMPTY as KeyState<V>;
      for (const s of [...finals].reverse()) y = merge(y, s);
      assert.ok(equal(x, y));
      assert.equal(isPresent(x), isPresent(y));
      assert.equal(canonical(valueOf(x, consumed)), canonical(valueOf(y, consumed)));
    }),
    { numRuns: 300 },
  );
});

test('the earliest consumption survives a newer write that does not carry it', () => {
  let s: KeyState<V> = set(EMPTY as KeyState<V>, { n: 1, consumedAt: 5 }, encodeHlc({ wall: 1, counter: 0, node: 'n1' }), 'n1');
  s = merge(s, set(EMPTY as KeyState<V>, { n: 2 }, encodeHlc({ wall: 2, counter: 0, node: 'n2' }), 'n2'));
  assert.deepEqual(valueOf(s, consumed), { n: 2, consumedAt: 5 });
});

test('a remove deletes the writes it observed; a concurrent write survives it (observed-remove)', () => {
  const t = (wall: number, node: string) => encodeHlc({ wall, counter: 0, node });
  const a = set(EMPTY as KeyState<V>, { n: 1 }, t(1, 'n1'), 'n1');
  const removedOnN1 = remove(a, t(3, 'n1'));
  assert.equal(isPresent(removedOnN1), false);
  // n2 wrote concurrently (it never saw n1's write nor the remove).
  const concurrent = set(EMPTY as KeyState<V>, { n: 2 }, t(2, 'n2'), 'n2');
  const merged = merge(removedOnN1, concurrent);
  assert.equal(isPresent(merged), true);
  assert.deepEqual(valueOf(merged), { n: 2 }, 'the surviving write is the value, not the removed newer one');
  // With finalRemove (protocol state) nothing comes back.
  assert.equal(isPresent(merged, { finalRemove: true }), false);
  // A write after the remove was observed brings the key back (not final).
  const again = set(merged, { n: 3 }, t(4, 'n1'), 'n1');
  assert.deepEqual(valueOf(again), { n: 3 });
});

test('tombstones expire after the TTL, present keys never do', () => {
  const t = (wall: number) => encodeHlc({ wall, counter: 0, node: 'n1' });
  const s = remove(set(EMPTY as KeyState<V>, { n: 1 }, t(1000), 'n1'), t(2000));
  assert.equal(tombstoneExpired(s, 2500, 1000), false);
  assert.equal(tombstoneExpired(s, 3001, 1000), true);
  assert.equal(tombstoneExpired(set(s, { n: 2 }, t(2500), 'n1'), 9e9, 1000), false);
});

test('checkState refuses malformed states from peers', () => {
  const good = set(EMPTY as KeyState<V>, { n: 1 }, encodeHlc({ wall: 1, counter: 0, node: 'n1' }), 'n1');
  assert.doesNotThrow(() => checkState(JSON.parse(JSON.stringify(good))));
  for (const bad of [null, [], { w: {}, r: {} }, { w: { n1: { t: 'x', v: 1 } }, r: {}, d: null }, { w: {}, r: { n1: 5 }, d: null }, { w: {}, r: {}, d: 'yesterday' }]) {
    assert.throws(() => checkState(bad));
  }
});

test('hybrid logical clock: monotonic, follows wall time, orders after received timestamps', () => {
  let wall = 1000;
  const c = new HybridClock('n1', () => wall);
  const a = c.tick();
  const b = c.tick(); // same millisecond
  assert.ok(compareHlc(b, a) > 0);
  wall = 900; // clock stepped back
  const d = c.tick();
  assert.ok(compareHlc(d, b) > 0, 'never goes backwards');
  // A peer 5 s ahead: our next event orders after its timestamp.
  const remote = encodeHlc({ wall: 6000, counter: 7, node: 'n2' });
  c.receive(remote);
  const e = c.tick();
  assert.ok(compareHlc(e, remote) > 0);
  assert.equal(decodeHlc(e).wall, 6000);
  // Too far ahead: refused, clock unchanged.
  assert.throws(() => c.receive(encodeHlc({ wall: 900 + 3_600_000, counter: 0, node: 'n3' })), ClockDriftError);
  assert.equal(decodeHlc(c.tick()).wall, 6000);
  // Restored after a restart, it continues after the last timestamp it gave out.
  const restarted = new HybridClock('n1', () => 100);
  restarted.restore(c.last);
  assert.ok(compareHlc(restarted.tick(), e) > 0);
});

test('timestamps of different nodes at the same instant are ordered by node id (ties break the same way everywhere)', () => {
  const x = encodeHlc({ wall: 5, counter: 0, node: 'a' });
  const y = encodeHlc({ wall: 5, counter: 0, node: 'b' });
  assert.ok(compareHlc(x, y) < 0);
  assert.deepEqual(decodeHlc(encodeHlc({ wall: 1735000000000, counter: 12, node: '10.10.20.11' })), { wall: 1735000000000, counter: 12, node: '10.10.20.11' });
});
