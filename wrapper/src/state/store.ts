// Persistent OpenID Provider state (authorization codes, tokens, sessions, interactions, ...).
//
// `StateStore` is the boundary the OIDC adapter talks to. `SqliteStateStore` keeps everything in
// one SQLite file on this node; a future cluster store will satisfy the same interface and forward
// `consumeOnce` to the node named in a record's `origin`, so single-use stays enforced in one place.

import type Database from 'better-sqlite3';
import { openSqliteFile } from './sqlite-file.js';

/** Outcome of the atomic single-use primitive. */
export type ConsumeResult = 'consumed' | 'already_consumed' | 'not_found';

/** A JSON object as stored for one record. */
export type StatePayload = Record<string, unknown>;

export interface StateRecord {
  /** Model name, e.g. "AuthorizationCode", "RefreshToken", "Session". */
  readonly model: string;
  readonly id: string;
  /** A fresh copy on every read: mutating it does not change the store. */
  readonly payload: StatePayload;
  readonly grantId: string | null;
  readonly userCode: string | null;
  readonly uid: string | null;
  /** Epoch milliseconds; null = never expires. */
  readonly expiresAt: number | null;
  /** Epoch milliseconds of the winning `consumeOnce`; null = not consumed. */
  readonly consumedAt: number | null;
  /** Id of the node that first stored (issued) this record; "local" on a single node. */
  readonly origin: string;
}

export interface StateStore {
  /** This node's id, written as `origin` of records it issues. */
  readonly nodeId: string;
  /**
   * Inserts or replaces `(model, id)`. `grantId`, `userCode` and `uid` are indexed from the
   * payload's string fields of those names. `expiresInSeconds` undefined/null = no expiry.
   * Replacing a live record never clears its consumed mark nor changes its origin.
   */
  upsert(model: string, id: string, payload: StatePayload, expiresInSeconds?: number | null): Promise<void>;
  /** The live (unexpired) record, consumed or not; undefined if missing or expired. */
  find(model: string, id: string): Promise<StateRecord | undefined>;
  findByUid(model: string, uid: string): Promise<StateRecord | undefined>;
  findByUserCode(model: string, userCode: string): Promise<StateRecord | undefined>;
  /** Every live record of `model`, ordered by id (small administrative models: federation links, registered clients, session watches). */
  list(model: string): Promise<StateRecord[]>;
  /** Atomically marks a live record consumed; exactly one of any number of racing callers wins. */
  consumeOnce(model: string, id: string): Promise<ConsumeResult>;
  destroy(model: string, id: string): Promise<void>;
  /** Deletes every record of the grant across all models; resolves to the number deleted. */
  revokeByGrantId(grantId: string): Promise<number>;
  /** Deletes expired records; resolves to the number deleted. Call it on a timer you own. */
  sweep(): Promise<number>;
  /** Live records per model (sessions, grants, refresh tokens...), for operators. */
  countLive(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export interface SqliteStateStoreOptions {
  /** Directory holding `state.db`; created (mode 0700) if missing. */
  readonly dataDir: string;
  /** Written as `origin` of new records. Default "local". */
  readonly nodeId?: string;
  /** Clock in epoch milliseconds (tests inject one). Default `Date.now`. */
  readonly now?: () => number;
  /** How long a write waits for another connection's lock. Default 5000 ms. */
  readonly busyTimeoutMs?: number;
}

export const STATE_DB_FILE = 'state.db';

const SCHEMA_VERSION = 1;

interface Row {
  model: string;
  id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  expires_at: number | null;
  consumed_at: number | null;
  origin: string;
}

const COLUMNS = 'model, id, payload, grant_id, user_code, uid, expires_at, consumed_at, origin';
/** Insert a record, or replace its data; callers add how consumption and origin merge. */
const WRITE_RECORD = `INSERT INTO state_records (${COLUMNS})
        VALUES (@model, @id, @payload, @grantId, @userCode, @uid, @expiresAt, @consumedAt, @origin)
        ON CONFLICT (model, id) DO UPDATE SET
          payload = excluded.payload,
          grant_id = excluded.grant_id,
          user_code = excluded.user_code,
          uid = excluded.uid,
          expires_at = excluded.expires_at,`;
const LIVE = '(expires_at IS NULL OR expires_at > @now)';

function toRecord(row: Row | undefined): StateRecord | undefined {
  if (!row) return undefined;
  return {
    model: row.model,
    id: row.id,
    payload: JSON.parse(row.payload) as StatePayload,
    grantId: row.grant_id,
    userCode: row.user_code,
    uid: row.uid,
    expiresAt: row.expires_at,
    consumedAt: row.consumed_at,
    origin: row.origin,
  };
}

function requireKey(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`state store: ${what} must be a non-empty string`);
  }
}

function stringField(payload: StatePayload, key: string): string | null {
  const v = payload[key];
  return typeof v === 'string' && v !== '' ? v : null;
}

/** The columns a payload determines: its JSON text and the indexed ids it names. */
export function payloadColumns(payload: StatePayload): { payload: string; grantId: string | null; userCode: string | null; uid: string | null } {
  return {
    payload: JSON.stringify(payload),
    grantId: stringField(payload, 'grantId'),
    userCode: stringField(payload, 'userCode'),
    uid: stringField(payload, 'uid'),
  };
}

/**
 * What `upsert` writes for a payload at `now` (epoch ms): its columns, the
 * expiry, and a consumed mark the payload itself carries (in seconds).
 */
export function upsertColumns(payload: StatePayload, expiresInSeconds: number | null | undefined, now: number) {
  const consumed = payload.consumed;
  return {
    ...payloadColumns(payload),
    expiresAt: expiresInSeconds == null ? null : now + Math.round(expiresInSeconds * 1000),
    // A payload that already says it was consumed (seconds) stays consumed.
    consumedAt: typeof consumed === 'number' && Number.isFinite(consumed) ? Math.round(consumed * 1000) : null,
  };
}

export class SqliteStateStore implements StateStore {
  readonly nodeId: string;
  /** Absolute path of the SQLite file. */
  readonly file: string;
  private readonly db: Database.Database;
  private readonly now: () => number;
  private readonly stmt: {
    upsert: Database.Statement;
    find: Database.Statement;
    findByUid: Database.Statement;
    findByUserCode: Database.Statement;
    list: Database.Statement;
    consume: Database.Statement;
    exists: Database.Statement;
    destroy: Database.Statement;
    revokeByGrantId: Database.Statement;
    sweep: Database.Statement;
    countLive: Database.Statement;
    applyReplica: Database.Statement;
    allLive: Database.Statement;
  };

  constructor(options: SqliteStateStoreOptions) {
    this.nodeId = options.nodeId ?? 'local';
    requireKey('nodeId', this.nodeId);
    this.now = options.now ?? Date.now;
    const busyTimeoutMs = Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5_000));
    const { db, file } = openSqliteFile(options.dataDir, STATE_DB_FILE, { busyTimeoutMs, migrate });
    this.file = file;
    this.db = db;

    this.stmt = {
      // A row that has expired but not been swept yet counts as absent: replacing it starts afresh.
      upsert: db.prepare(`
        ${WRITE_RECORD}
          consumed_at = CASE WHEN state_records.expires_at IS NOT NULL AND state_records.expires_at <= @now
                             THEN excluded.consumed_at
                             ELSE coalesce(state_records.consumed_at, excluded.consumed_at) END,
          origin = CASE WHEN state_records.expires_at IS NOT NULL AND state_records.expires_at <= @now
                        THEN excluded.origin
                        ELSE state_records.origin END`),
      find: db.prepare(`SELECT ${COLUMNS} FROM state_records WHERE model = @model AND id = @id AND ${LIVE}`),
      findByUid: db.prepare(
        `SELECT ${COLUMNS} FROM state_records WHERE uid = @uid AND model = @model AND ${LIVE} LIMIT 1`,
      ),
      findByUserCode: db.prepare(
        `SELECT ${COLUMNS} FROM state_records WHERE user_code = @userCode AND model = @model AND ${LIVE} LIMIT 1`,
      ),
      list: db.prepare(`SELECT ${COLUMNS} FROM state_records WHERE model = @model AND ${LIVE} ORDER BY id`),
      // The single-use primitive: one statement, SQLite's write lock makes it atomic across
      // connections and processes; `changes` tells the winner.
      consume: db.prepare(`
        UPDATE state_records SET consumed_at = @now
        WHERE model = @model AND id = @id AND consumed_at IS NULL AND ${LIVE}`),
      exists: db.prepare(`SELECT 1 FROM state_records WHERE model = @model AND id = @id AND ${LIVE}`),
      destroy: db.prepare('DELETE FROM state_records WHERE model = @model AND id = @id'),
      revokeByGrantId: db.prepare('DELETE FROM state_records WHERE grant_id = @grantId'),
      sweep: db.prepare('DELETE FROM state_records WHERE expires_at IS NOT NULL AND expires_at <= @now'),
      countLive: db.prepare(`SELECT model, count(*) AS n FROM state_records WHERE ${LIVE} GROUP BY model ORDER BY model`),
      // A record as another node has it (cluster/replicated-state.ts): exact expiry and origin;
      // the earliest consumption wins, and a live record keeps its origin.
      applyReplica: db.prepare(`
        ${WRITE_RECORD}
          consumed_at = CASE WHEN state_records.consumed_at IS NULL THEN excluded.consumed_at
                             WHEN excluded.consumed_at IS NULL THEN state_records.consumed_at
                             ELSE min(state_records.consumed_at, excluded.consumed_at) END,
          origin = excluded.origin`),
      allLive: db.prepare(`SELECT ${COLUMNS} FROM state_records WHERE ${LIVE} ORDER BY model, id`),
    };
  }

  async upsert(model: string, id: string, payload: StatePayload, expiresInSeconds?: number | null): Promise<void> {
    requireKey('model', model);
    requireKey('id', id);
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new TypeError('state store: payload must be a JSON object');
    }
    if (expiresInSeconds != null && !Number.isFinite(expiresInSeconds)) {
      throw new TypeError('state store: expiresIn must be a finite number of seconds');
    }
    const now = this.now();
    this.stmt.upsert.run({ model, id, ...upsertColumns(payload, expiresInSeconds, now), origin: this.nodeId, now });
  }

  async find(model: string, id: string): Promise<StateRecord | undefined> {
    return toRecord(this.stmt.find.get({ model, id, now: this.now() }) as Row | undefined);
  }

  async findByUid(model: string, uid: string): Promise<StateRecord | undefined> {
    return toRecord(this.stmt.findByUid.get({ model, uid, now: this.now() }) as Row | undefined);
  }

  async findByUserCode(model: string, userCode: string): Promise<StateRecord | undefined> {
    return toRecord(this.stmt.findByUserCode.get({ model, userCode, now: this.now() }) as Row | undefined);
  }

  async list(model: string): Promise<StateRecord[]> {
    const rows = this.stmt.list.all({ model, now: this.now() }) as Row[];
    return rows.map((r) => toRecord(r)!);
  }

  async consumeOnce(model: string, id: string): Promise<ConsumeResult> {
    const now = this.now();
    if (this.stmt.consume.run({ model, id, now }).changes === 1) return 'consumed';
    return this.stmt.exists.get({ model, id, now }) ? 'already_consumed' : 'not_found';
  }

  async destroy(model: string, id: string): Promise<void> {
    this.stmt.destroy.run({ model, id });
  }

  async revokeByGrantId(grantId: string): Promise<number> {
    requireKey('grantId', grantId);
    return this.stmt.revokeByGrantId.run({ grantId }).changes;
  }

  async sweep(): Promise<number> {
    return this.stmt.sweep.run({ now: this.now() }).changes;
  }

  async countLive(): Promise<Record<string, number>> {
    const rows = this.stmt.countLive.all({ now: this.now() }) as Array<{ model: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.model, r.n]));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  // Hooks for the cluster layer (cluster/replicated-state.ts), which replicates records between
  // nodes: it writes records exactly as another node has them and re-reads all live ones.

  /** Writes a record as replicated from another node (absolute expiry, consumed mark, origin). */
  applyReplica(r: Omit<StateRecord, 'grantId' | 'userCode' | 'uid'>): void {
    this.stmt.applyReplica.run({
      model: r.model,
      id: r.id,
      ...payloadColumns(r.payload),
      expiresAt: r.expiresAt,
      consumedAt: r.consumedAt,
      origin: r.origin,
    });
  }

  /** Every live record (for reconciling with the cluster replica at start). */
  liveRecords(): StateRecord[] {
    return (this.stmt.allLive.all({ now: this.now() }) as Row[]).map((row) => toRecord(row)!);
  }
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION) {
    throw new Error(
      `state store: ${db.name} has schema version ${version}, this build only knows ${SCHEMA_VERSION}`,
    );
  }
  db.transaction(() => {
    db.exec(`
      CREATE TABLE IF NOT EXISTS state_records (
        model       TEXT    NOT NULL,
        id          TEXT    NOT NULL,
        payload     TEXT    NOT NULL CHECK (json_valid(payload)),
        grant_id    TEXT,
        user_code   TEXT,
        uid         TEXT,
        expires_at  INTEGER,
        consumed_at INTEGER,
        origin      TEXT    NOT NULL DEFAULT 'local',
        PRIMARY KEY (model, id)
      );
      CREATE INDEX IF NOT EXISTS state_records_grant_id ON state_records (grant_id) WHERE grant_id IS NOT NULL;
      CREATE INDEX IF NOT EXISTS state_records_uid ON state_records (uid) WHERE uid IS NOT NULL;
      CREATE INDEX IF NOT EXISTS state_records_user_code ON state_records (user_code) WHERE user_code IS NOT NULL;
      CREATE INDEX IF NOT EXISTS state_records_expires_at ON state_records (expires_at) WHERE expires_at IS NOT NULL;
    `);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
