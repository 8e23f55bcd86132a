// What a server has open — its unanswered requests, its connections — for
// the drain to wait on, count and close.
//
// Why not a Set: a long-lived Set or Map with an entry added and removed per
// request made V8 promote most of each request's objects to the old
// generation, where only a full collection frees them. Measured on the bare
// Node proxy of bench/proxy-floor.ts (paced /status, --trace-gc-nvp): 36 KB
// promoted per young-generation collection without one, 445 KB with a Set of
// the responses, 637 KB with a Map keyed by a number; those collections
// paused 1.7, 2.7 and 3.5 ms. (Probably V8's hash tables: a rehash moves the
// entries to a new table and leaves the old one pointing at them, and an old
// table in the old generation keeps them alive for the young collector.) In
// the front door: 0.8–1.0 MB promoted per collection with its Set of
// responses, 0.27 MB without. Here each entry is held in one array slot
// only, and removing it clears that slot.
export class InFlight<T> implements Iterable<T> {
  private readonly slots: Array<T | undefined> = [];
  private readonly free: number[] = [];
  private count = 0;

  /** Holds `item`; the number returned removes it. */
  add(item: T): number {
    const slot = this.free.pop() ?? this.slots.length;
    this.slots[slot] = item;
    this.count++;
    return slot;
  }

  /** Lets go of `item`, which `add` gave `slot`; a second call does nothing, even once the slot holds another item. */
  remove(slot: number, item: T): void {
    if (this.slots[slot] !== item || item === undefined) return;
    this.slots[slot] = undefined;
    this.free.push(slot);
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const item of this.slots) if (item !== undefined) yield item;
  }
}
