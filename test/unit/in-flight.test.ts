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
      const added: Array<[number, object]> = [];
      for (const op of ops) {
        if (op === 'add') {
          const item = {};
          const slot = open.add(item);
          assert.equal(model.has(slot), false, 'a slot in use is not handed out again');
          model.set(slot, item);
          added.push([slot, item]);
        } else if (added.length > 0) {
          // Any item added so far: removing one already removed changes nothing,
          // also when its slot now holds a later item.
          const [slot, item] = added[op % added.length]!;
          open.remove(slot, item);
          if (model.get(slot) === item) model.delete(slot);
        }
        assert.equal(open.size, model.size);
        assert.deepEqual(new Set(open), new Set(model.values()));
      }
    }),
  );
});

test('a removed slot is used again; removing twice frees it once and never takes its next item', () => {
  const open = new InFlight<string>();
  const a = open.add('a');
  const b = open.add('b');
  open.remove(a, 'a');
  open.remove(a, 'a');
  assert.equal(open.size, 1);
  const c = open.add('c');
  assert.equal(c, a, 'the freed slot is reused');
  open.remove(a, 'a'); // late: the slot is 'c' now
  assert.deepEqual([...open].sort(), ['b', 'c']);
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
    open.remove(slots[n - 1]!, n);
  }
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.equal(open.size, 0);
});
