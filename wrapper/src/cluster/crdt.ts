// The replicated data type: an observed-remove map (OR-map) whose values are last-writer-wins
// registers on hybrid logical clock timestamps (hlc.ts). Pure functions only; persistence is
// replica-db.ts, transport is gossip.ts.
//
// Per key the state is
//   w   writes: for each node, its latest write of this key {t: timestamp, v: value}
//   r   removal context: for each node, the latest write timestamp a remove had observed
//   d   timestamp of the latest remove (the tombstone's age, for garbage collection)
// A key is present while some node's write is newer than what removes have observed: a write
// concurrent with a remove survives it (observed-remove), a remove after a write it has seen
// deletes it. Its value is the newest surviving write (last writer wins). Kinds whose keys are
// never reused (protocol state: codes, tokens, sessions) ask for `finalRemove`: once removed a
// key stays removed, so a logout cannot be undone by a concurrent touch of the same session.
//
// Merging takes pointwise maxima, a join of semilattices: commutative, associative and
// idempotent, so replicas that have seen the same updates agree whatever order, grouping or
// repetition the updates arrived in (test/unit/cluster-crdt.test.ts checks these laws).
//
// Why not Yjs/Automerge: both model documents with their own history and garbage collection;
// what is needed here is a flat map with per-key deltas, tombstones that expire after a TTL and
// persistence row by row in SQLite, which is this small module.

import { hlcWall, isHlc, maxHlc } from './hlc.js';

export interface Write<V> {
  readonly t: string;
  readonly v: V;
}

export interface KeyState<V = unknown> {
  readonly w: Readonly<Record<string, Write<V>>>;
  readonly r: Readonly<Record<string, string>>;
  readonly d: string | null;
}

export interface KindPolicy<V> {
  /** Once removed, a key never comes back (ids that are never reused). */
  readonly finalRemove?: boolean;
  /**
   * Folds the other surviving writes into the newest one, for fields that only ever grow
   * (e.g. "consumed at": the earliest consumption anywhere wins). Must be commutative in its
   * second argument's order and idempotent.
   */
  readonly combine?: (newest: V, other: V) => V;
}

export const EMPTY: KeyState<never> = Object.freeze({ w: {}, r: {}, d: null });

function surviving<V>(s: KeyState<V>, policy?: KindPolicy<V>): Array<Write<V>> {
  if (policy?.finalRemove && s.d !== null) return [];
  const out: Array<Write<V>> = [];
  for (const [node, wr] of Object.entries(s.w)) {
    const removed = s.r[node];
    if (!removed || removed < wr.t) out.push(wr);
  }
  return out;
}

export function isPresent<V>(s: KeyState<V>, policy?: KindPolicy<V>): boolean {
  return surviving(s, policy).length > 0;
}

/** The value of a present key (newest surviving write, combined with the others), else undefined. */
export function valueOf<V>(s: KeyState<V> | undefined, policy?: KindPolicy<V>): V | undefined {
  if (!s) return undefined;
  const live = surviving(s, policy).sort((x, y) => (x.t < y.t ? 1 : x.t > y.t ? -1 : 0));
  if (live.length === 0) return undefined;
  let v = live[0]!.v;
  if (policy?.combine) for (const other of live.slice(1)) v = policy.combine(v, other.v);
  return v;
}

/** Timestamp of the newest surviving write, else undefined. */
export function writtenAt<V>(s: KeyState<V>, policy?: KindPolicy<V>): string | undefined {
  let m: string | undefined;
  for (const wr of surviving(s, policy)) if (!m || wr.t > m) m = wr.t;
  return m;
}

export function merge<V>(x: KeyState<V>, y: KeyState<V>): KeyState<V> {
  const w: Record<string, Write<V>> = { ...x.w };
  for (const [node, wr] of Object.entries(y.w)) {
    const mine = w[node];
    // Equal timestamps from one node are the same write.
    if (!mine || mine.t < wr.t) w[node] = wr;
  }
  const r: Record<string, string> = { ...x.r };
  for (const [node, t] of Object.entries(y.r)) if (!r[node] || r[node]! < t) r[node] = t;
  return { w, r, d: maxHlc(x.d, y.d) };
}

/** A local write of `value` at `hlc` (from `node`'s clock). */
export function set<V>(s: KeyState<V>, value: V, hlc: string, node: string): KeyState<V> {
  return merge(s, { w: { [node]: { t: hlc, v: value } }, r: {}, d: null });
}

/** A local remove at `hlc`: tombstones every write this replica has observed. */
export function remove<V>(s: KeyState<V>, hlc: string): KeyState<V> {
  const r: Record<string, string> = { ...s.r };
  for (const [node, wr] of Object.entries(s.w)) if (!r[node] || r[node]! < wr.t) r[node] = wr.t;
  return { w: s.w, r, d: maxHlc(s.d, hlc) };
}

/** Canonical JSON (sorted keys at every level) so equal states compare equal as strings. */
export function canonical(x: unknown): string {
  if (x === null || typeof x !== 'object') return JSON.stringify(x) ?? 'null';
  if (Array.isArray(x)) return `[${x.map(canonical).join(',')}]`;
  const o = x as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

export function equal<V>(x: KeyState<V>, y: KeyState<V>): boolean {
  return canonical(x) === canonical(y);
}

/**
 * True when a removed key may be forgotten: removed for longer than `ttlMs` and nothing
 * survives. A replica that was away longer than that may bring it back (the reference's
 * caveat: the TTL must exceed the longest node downtime).
 */
export function tombstoneExpired<V>(s: KeyState<V>, now: number, ttlMs: number, policy?: KindPolicy<V>): boolean {
  return !isPresent(s, policy) && s.d !== null && hlcWall(s.d) + ttlMs < now;
}

/** Latest timestamp anywhere in the state. */
export function newest(s: KeyState<unknown>): string | null {
  let m = s.d;
  for (const wr of Object.values(s.w)) m = maxHlc(m, wr.t);
  return m;
}

/** Shape check of a state received from a peer; throws saying what is wrong. */
export function checkState(raw: unknown): KeyState<unknown> {
  const s = raw as Record<string, unknown>;
  if (!s || typeof s !== 'object' || Array.isArray(s)) throw new Error('state must be an object');
  if (s.d !== null && !isHlc(s.d)) throw new Error('d must be a timestamp or null');
  const w = s.w as Record<string, unknown>;
  if (!w || typeof w !== 'object' || Array.isArray(w)) throw new Error('w must be an object');
  for (const wr of Object.values(w)) {
    const x = wr as Record<string, unknown>;
    if (!x || typeof x !== 'object' || !isHlc(x.t) || !('v' in x)) throw new Error('w must map node ids to {t, v}');
  }
  const r = s.r as Record<string, unknown>;
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw new Error('r must be an object');
  for (const t of Object.values(r)) if (!isHlc(t)) throw new Error('r must map node ids to timestamps');
  return { w: w as Record<string, Write<unknown>>, r: r as Record<string, string>, d: s.d as string | null };
}
