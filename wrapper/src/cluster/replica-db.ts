// This node's replica of the cluster map (crdt.ts), persisted in `<data_dir>/cluster/cluster.db`
// (SQLite, WAL, 0600) so a node killed with `kill -9` restarts with everything it had merged.
//
// Every change to a row (local write or merge of a peer's delta) gets the next local sequence
// number. Deltas for a peer are "rows with seq above what that peer has acknowledged", so
// updates that arrived from a third node are relayed too (no full mesh needed). The database's
// random `epoch` tells peers when a replica was wiped and they must resend everything.

import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { openSqliteFile } from '../state/sqlite-file.js';
import { HybridClock, hlcWall } from './hlc.js';
import { EMPTY, canonical, checkState, isPresent, merge, remove, set, valueOf, type KeyState, type KindPolicy } from './crdt.js';

export interface KindOptions<V = any> extends KindPolicy<V> {
  /** Epoch ms after which a present value is dead everywhere (protocol state); null = never. */
  readonly expiresAt?: (v: V) => number | null;
}

export interface DeltaItem {
  readonly kind: string;
  readonly key: string;
  readonly state: KeyState<unknown>;
}

export interface Change {
  readonly kind: string;
  readonly key: string;
  readonly state: KeyState<unknown>;
  readonly present: boolean;
  readonly value: unknown;
  /** True when the change came from a peer, false for this node's own writes. */
  readonly remote: boolean;
}

export interface PeerRow {
  node_id: string;
  url: string | null;
  recv_epoch: string | null;
  recv_seq: number;
  /** Position of this node's log the peer has acknowledged (for lag). */
  acked_seq: number;
  last_contact_at: number | null;
  last_error: string | null;
  last_error_at: number | null;
}

export const CLUSTER_DB_FILE = 'cluster.db';
const SCHEMA_VERSION = 1;

interface Row {
  kind: string;
  key: string;
  state: string;
  seq: number;
}

export interface ReplicaDbOptions {
  dir: string;
  node: string;
  now?: () => number;
  maxDriftMs?: number;
}

export class ReplicaDb {
  readonly node: string;
  readonly epoch: string;
  readonly clock: HybridClock;
  readonly file: string;
  private readonly db: Database.Database;
  private readonly now: () => number;
  private readonly kinds = new Map<string, KindOptions>();
  private readonly listeners: Array<(changes: readonly Change[]) => void> = [];
  private seq: number;
  private readonly stmt;

  constructor(o: ReplicaDbOptions) {
    this.node = o.node;
    this.now = o.now ?? Date.now;
    // A power cut may lose the last commits (synchronous = NORMAL, see sqlite-file.ts); peers
    // resend them after the next error or restart (every start pushes everything once).
    const { db, file } = openSqliteFile(o.dir, CLUSTER_DB_FILE, { migrate });
    this.file = file;
    this.db = db;
    this.stmt = {
      get: db.prepare('SELECT kind, key, state, seq FROM entries WHERE kind = ? AND key = ?'),
      put: db.prepare(`INSERT INTO entries (kind, key, state, seq, present, removed_at, expires_at, changed_at, source)
        VALUES (@kind, @key, @state, @seq, @present, @removed_at, @expires_at, @changed_at, @source)
        ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, seq = excluded.seq, present = excluded.present,
          removed_at = excluded.removed_at, expires_at = excluded.expires_at, changed_at = excluded.changed_at, source = excluded.source`),
      list: db.prepare('SELECT kind, key, state, seq FROM entries WHERE kind = ? ORDER BY key'),
      // Rows whose last change came from the peer itself are not sent back to it: it has them.
      since: db.prepare("SELECT kind, key, state, seq FROM entries WHERE seq > ? AND source IS NOT ? ORDER BY seq LIMIT ?"),
      oldestSince: db.prepare('SELECT min(changed_at) AS t, count(*) AS n FROM entries WHERE seq > ? AND source IS NOT ?'),
      meta: db.prepare('SELECT value FROM meta WHERE name = ?'),
      setMeta: db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value'),
      gcExpired: db.prepare('DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?'),
      gcTombstones: db.prepare('DELETE FROM entries WHERE present = 0 AND removed_at IS NOT NULL AND removed_at < ?'),
      peer: db.prepare('SELECT * FROM peers WHERE node_id = ?'),
      peers: db.prepare('SELECT * FROM peers ORDER BY node_id'),
      upsertPeer: db.prepare(`INSERT INTO peers (node_id, url, recv_epoch, recv_seq, acked_seq, last_contact_at, last_error, last_error_at)
        VALUES (@node_id, @url, @recv_epoch, @recv_seq, @acked_seq, @last_contact_at, @last_error, @last_error_at)
        ON CONFLICT (node_id) DO UPDATE SET url = excluded.url, recv_epoch = excluded.recv_epoch, recv_seq = excluded.recv_seq, acked_seq = excluded.acked_seq,
          last_contact_at = excluded.last_contact_at, last_error = excluded.last_error, last_error_at = excluded.last_error_at`),
      count: db.prepare('SELECT kind, sum(present) AS present, count(*) AS total FROM entries GROUP BY kind'),
    };
    let epoch = (this.stmt.meta.get('epoch') as { value: string } | undefined)?.value;
    if (!epoch) {
      epoch = randomBytes(8).toString('hex');
      this.stmt.setMeta.run('epoch', epoch);
    }
    this.epoch = epoch;
    this.seq = Number((this.stmt.meta.get('seq') as { value: string } | undefined)?.value ?? 0);
    this.clock = new HybridClock(o.node, this.now, o.maxDriftMs);
    this.clock.restore((this.stmt.meta.get('hlc') as { value: string } | undefined)?.value);
  }

  /** Declares how a kind merges and expires. Unknown kinds use plain OR-map semantics. */
  defineKind<V>(kind: string, options: KindOptions<V>): void {
    this.kinds.set(kind, options as KindOptions);
  }

  policy(kind: string): KindOptions {
    return this.kinds.get(kind) ?? {};
  }

  onChange(listener: (changes: readonly Change[]) => void): void {
    this.listeners.push(listener);
  }

  get maxSeq(): number {
    return this.seq;
  }

  get(kind: string, key: string): KeyState<unknown> | undefined {
    const row = this.stmt.get.get(kind, key) as Row | undefined;
    return row ? (JSON.parse(row.state) as KeyState<unknown>) : undefined;
  }

  value<V>(kind: string, key: string): V | undefined {
    const s = this.get(kind, key);
    return s ? (this.visible(kind, s) as V | undefined) : undefined;
  }

  /** Present keys of a kind with their values. */
  entries<V>(kind: string): Array<{ key: string; value: V; state: KeyState<unknown> }> {
    const out: Array<{ key: string; value: V; state: KeyState<unknown> }> = [];
    for (const row of this.stmt.list.all(kind) as Row[]) {
      const state = JSON.parse(row.state) as KeyState<unknown>;
      const value = this.visible(kind, state);
      if (value !== undefined) out.push({ key: row.key, value: value as V, state });
    }
    return out;
  }

  /** Every row of a kind, tombstones included. */
  states(kind: string): Array<{ key: string; state: KeyState<unknown> }> {
    return (this.stmt.list.all(kind) as Row[]).map((r) => ({ key: r.key, state: JSON.parse(r.state) as KeyState<unknown> }));
  }

  /** The visible value: present, not expired. */
  visible(kind: string, s: KeyState<unknown>): unknown {
    const p = this.policy(kind);
    const v = valueOf(s, p);
    if (v === undefined) return undefined;
    const exp = p.expiresAt?.(v);
    return exp != null && exp <= this.now() ? undefined : v;
  }

  localSet(kind: string, key: string, value: unknown): Change {
    return this.writeLocal(kind, key, (s) => set(s, value, this.clock.tick(), this.node));
  }

  localRemove(kind: string, key: string): Change | undefined {
    const current = this.get(kind, key);
    if (!current || !isPresent(current, this.policy(kind))) return undefined;
    return this.writeLocal(kind, key, (s) => remove(s, this.clock.tick()));
  }

  private writeLocal(kind: string, key: string, update: (s: KeyState<unknown>) => KeyState<unknown>): Change {
    const change = this.db.transaction(() => {
      const before = this.get(kind, key) ?? (EMPTY as KeyState<unknown>);
      const after = update(before);
      this.store(kind, key, after, null);
      this.stmt.setMeta.run('seq', String(this.seq));
      this.stmt.setMeta.run('hlc', this.clock.last);
      return this.describe(kind, key, after, false);
    }).immediate();
    this.emit([change]);
    return change;
  }

  /**
   * Merges a peer's delta in one transaction and records how far into the peer's log we are.
   * `accept` drops items before merge (unlisted node entries, expired records...). Returns what
   * changed here.
   */
  mergeRemote(
    from: string,
    items: readonly DeltaItem[],
    accept: (item: DeltaItem) => boolean = () => true,
    /** Set when the items are a gap-free continuation of the peer's log up to `seq`. */
    watermark?: { epoch: string; seq: number },
  ): Change[] {
    const changes = this.db.transaction(() => {
      const out: Change[] = [];
      for (const item of items) {
        const state = checkState(item.state);
        if (!accept({ ...item, state })) continue;
        for (const wr of Object.values(state.w)) this.clock.receive(wr.t);
        const before = this.get(item.kind, item.key);
        const after = before ? merge(before, state) : state;
        const afterText = canonical(after);
        if (before && canonical(before) === afterText) continue;
        // Already dead everywhere: do not store or relay it.
        const p = this.policy(item.kind);
        const v = valueOf(after, p);
        const exp = v !== undefined ? p.expiresAt?.(v) : undefined;
        if (!before && exp != null && exp <= this.now()) continue;
        // Remember who sent it only when we now hold exactly their state (nothing of ours added).
        this.store(item.kind, item.key, after, afterText === canonical(state) ? from : null);
        out.push(this.describe(item.kind, item.key, after, true));
      }
      this.stmt.setMeta.run('seq', String(this.seq));
      if (watermark) {
        const p = this.peer(from);
        // Pushes and pulls of the same log can interleave: never move backwards in it.
        const seq = p.recv_epoch === watermark.epoch ? Math.max(p.recv_seq, watermark.seq) : watermark.seq;
        this.putPeer({ ...p, recv_epoch: watermark.epoch, recv_seq: seq });
      }
      this.stmt.setMeta.run('hlc', this.clock.last);
      return out;
    }).immediate();
    if (changes.length) this.emit(changes);
    return changes;
  }

  /** Rows changed after local sequence number `seq`, oldest first, at most `limit`. */
  since(seq: number, limit: number, forPeer = ''): { items: DeltaItem[]; upto: number; more: boolean } {
    const rows = this.stmt.since.all(seq, forPeer, limit + 1) as Row[];
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    return {
      items: page.map((r) => ({ kind: r.kind, key: r.key, state: JSON.parse(r.state) as KeyState<unknown> })),
      upto: more ? page[page.length - 1]!.seq : this.seq,
      more,
    };
  }

  /** What a peer that has acknowledged `seq` still lacks: rows and the age of the oldest change. */
  lagSince(seq: number, peer = ''): { entries: number; seconds: number } {
    const r = this.stmt.oldestSince.get(seq, peer) as { t: number | null; n: number };
    return { entries: r.n, seconds: r.t === null ? 0 : Math.max(0, (this.now() - r.t) / 1000) };
  }

  peer(nodeId: string): PeerRow {
    return (
      (this.stmt.peer.get(nodeId) as PeerRow | undefined) ?? {
        node_id: nodeId, url: null, recv_epoch: null, recv_seq: 0, acked_seq: 0, last_contact_at: null, last_error: null, last_error_at: null,
      }
    );
  }

  peers(): PeerRow[] {
    return this.stmt.peers.all() as PeerRow[];
  }

  putPeer(p: PeerRow): void {
    this.stmt.upsertPeer.run(p);
  }

  /** Forgets expired records and tombstones older than `tombstoneTtlMs`. */
  gc(tombstoneTtlMs: number): number {
    const now = this.now();
    return this.db.transaction(
      () => this.stmt.gcExpired.run(now).changes + this.stmt.gcTombstones.run(now - tombstoneTtlMs).changes,
    )();
  }

  counts(): Record<string, { present: number; total: number }> {
    const out: Record<string, { present: number; total: number }> = {};
    for (const r of this.stmt.count.all() as Array<{ kind: string; present: number; total: number }>) {
      out[r.kind] = { present: r.present, total: r.total };
    }
    return out;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private store(kind: string, key: string, state: KeyState<unknown>, source: string | null): void {
    const p = this.policy(kind);
    const present = isPresent(state, p);
    const v = present ? valueOf(state, p) : undefined;
    this.seq += 1;
    this.stmt.put.run({
      kind,
      key,
      state: JSON.stringify(state),
      seq: this.seq,
      present: present ? 1 : 0,
      removed_at: state.d ? hlcWall(state.d) : null,
      expires_at: v !== undefined ? (p.expiresAt?.(v) ?? null) : null,
      changed_at: this.now(),
      source,
    });
  }

  private describe(kind: string, key: string, state: KeyState<unknown>, remote: boolean): Change {
    const value = this.visible(kind, state);
    return { kind, key, state, present: value !== undefined, value, remote };
  }

  private emit(changes: readonly Change[]): void {
    for (const l of this.listeners) l(changes);
  }
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION) throw new Error(`cluster replica: ${db.name} has schema ${version}, this build knows ${SCHEMA_VERSION}`);
  db.transaction(() => {
    db.exec(`
      CREATE TABLE IF NOT EXISTS entries (
        kind       TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        state      TEXT    NOT NULL CHECK (json_valid(state)),
        seq        INTEGER NOT NULL,
        present    INTEGER NOT NULL,
        removed_at INTEGER,
        expires_at INTEGER,
        changed_at INTEGER NOT NULL,
        source     TEXT,
        PRIMARY KEY (kind, key)
      );
      CREATE INDEX IF NOT EXISTS entries_seq ON entries (seq);
      CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at) WHERE expires_at IS NOT NULL;
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS peers (
        node_id TEXT PRIMARY KEY, url TEXT, recv_epoch TEXT, recv_seq INTEGER NOT NULL DEFAULT 0, acked_seq INTEGER NOT NULL DEFAULT 0,
        last_contact_at INTEGER, last_error TEXT, last_error_at INTEGER
      );
    `);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
