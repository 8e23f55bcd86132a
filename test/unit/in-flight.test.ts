// server/in-flight.ts: the front door's record of open requests and
// connections, which its drain counts, marks and closes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InFlight } from '../../wrapper/src/server/in-flight.js';

test('holds what was added and not yet removed, whatever the order', () => {
  // Any sequence of adds and removes: size and contents match a Set's.
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constant('add' as const), fc.nat(50)), { maxLength: 200 }), (ops) => {
      const open = new InFlight<object>();
      const model = new Map<number, object>(); // slot -> item
      const slots: number[] = [];
      for (const op of ops) {
        if (op === 'add') {
          const item = {};
          const slot = open.add(item);
          assert.equal(model.has(slot), false, 'a slot in use is not handed out again');
          model.set(slot, item);
          slots.push(slot);
        } else if (slots.length > 0) {
          const slot = slots[op % slots.length]!;
          open.remove(slot); // removing twice (the same slot picked again) changes nothing
          model.delete(slot);
        }
        assert.equal(open.size, model.size);
        assert.deepEqual(new Set(open), new Set(model.values()));
      }
    }),
  );
});

test('a removed slot is used again, and removing it twice frees it once', () => {
  const open = new InFlight<string>();
  const a = open.add('a');
  const b = open.add('b');
  open.remove(a);
  open.remove(a);
  assert.equal(open.size, 1);
  const c = open.add('c');
  assert.equal(c, a, 'the freed slot is reused');
  const d = open.add('d');
  assert.notEqual(d, a, 'a slot freed twice is not handed out twice');
  assert.notEqual(d, b);
  assert.deepEqual([...open].sort(), ['b', 'c', 'd']);
});

test('removing while iterating (a drain destroying sockets) visits each item once', () => {
  const open = new InFlight<number>();
  const slots = [1, 2, 3, 4].map((n) => open.add(n));
  const seen: number[] = [];
  for (const n of open) {
    seen.push(n);
    open.remove(slots[n - 1]!);
  }
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.equal(open.size, 0);
});
