// What the cluster replicates, and how it maps onto this node's own stores. This is the
// replication boundary: other parts of Kiwi ID keep using the StateStore interface; records
// written through it are replicated according to their model's class:
//
//   durable   registrations that must exist on every node: dynamically registered clients
//             ("Client", "RegistrationAccessToken"), federation links ("FederatedLink"), and any
//             model this file does not know — replicated whenever gossip is on, in every distributed_mode
//   protocol  sign-in state: codes, tokens, sessions, grants, interactions, login state and
//             account snapshots — replicated in `eventual`, `forwarding` and `strict`, node-local
//             in `off` (as the reference's "off": codes only where issued, revocation node-local)
//   local     never replicated (register a model with registerModel(name, 'local'))
//
// Besides records, the map holds: revoked grants ("grant-revoked": all records of the grant are
// deleted everywhere and late copies are refused), static clients from each node's clients file
// ("client"), every node's signing public keys ("key"), and node entries ("node").

import type { StatePayload, StateRecord, StateStore, ConsumeResult } from '../state/store.js';
import type { DistributedMode } from '../config/cluster.js';
import type { Change, ReplicaDb } from './replica-db.js';

export type ReplicationClass = 'protocol' | 'durable' | 'local';

export const KIND = {
  state: 'state',
  revokedGrant: 'grant-revoked',
  client: 'client',
  key: 'key',
  node: 'node',
} as const;

/** oidc-provider's short-lived models and Kiwi ID's login state. */
const CLASSES = new Map<string, ReplicationClass>(
  [
    'Session', 'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'ClientCredentials', 'Interaction',
    'ReplayDetection', 'PushedAuthorizationRequest', 'Grant', 'BackchannelAuthenticationRequest', 'UpstreamLogin', 'Account',
    // federation/: sign-in state at an external IdP, used JWT-bearer assertion ids
    'FederationLogin', 'JwtBearerJti',
  ].map((m) => [m, 'protocol' as ReplicationClass]),
);

/** Declares how records of `model` replicate (for modules that add their own models). */
export function registerModel(model: string, cls: ReplicationClass): void {
  CLASSES.set(model, cls);
}

export function classifyModel(model: string): ReplicationClass {
  return CLASSES.get(model) ?? 'durable';
}

/** Single-use records whose consumption is forwarded to their issuing node (forwarding, strict). */
export const QUORUM_MODELS = new Set(['AuthorizationCode', 'RefreshToken']);

/** A state record as replicated (the value of a "state" key). */
export interface StateValue {
  model: string;
  id: string;
  payload: StatePayload;
  expiresAt: number | null;
  consumedAt: number | null;
  origin: string;
}

export interface RevokedGrant {
  at: number;
  /** Until when late copies of the grant's records must be refused. */
  expiresAt: number;
}

export const stateKey = (model: string, id: string) => `${model}\u0000${id}`;

function minConsumed(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

/** Kind policies for the replica database. */
export function defineKinds(db: ReplicaDb): void {
  db.defineKind<StateValue>(KIND.state, {
    // Codes, tokens and sessions get fresh random ids: a removed one never comes back.
    finalRemove: true,
    // Consumed anywhere = consumed: the earliest consumption survives newer writes.
    combine: (newest, other) => ({ ...newest, consumedAt: minConsumed(newest.consumedAt, other.consumedAt) }),
    expiresAt: (v) => v.expiresAt,
  });
  db.defineKind<RevokedGrant>(KIND.revokedGrant, { expiresAt: (v) => v.expiresAt });
}

/** The local store the cluster layer writes replicated records into (SqliteStateStore). */
export interface ReplicaTarget extends StateStore {
  applyReplica(r: Omit<StateRecord, 'grantId' | 'userCode' | 'uid'>): void;
  liveRecords(): StateRecord[];
}

/** Forwarding and quorum, provided by modes/ when the distributed mode uses them. */
export interface Coordination {
  /** Consume at `origin` (another node); resolves with its answer. */
  consumeAt(origin: string, model: string, id: string): Promise<{ result: ConsumeResult; consumedAt: number | null }>;
  /** Strict mode: resolves when issuing may proceed, throws when it may not. */
  approve?(record: StateRecord): Promise<void>;
  /** True when `origin` is another node this one can forward to. */
  isPeer(origin: string): boolean;
  /**
   * Asks the peers for a record this node does not have yet (not yet gossiped here), with
   * what redeeming it needs: its grant, session and account snapshot.
   */
  lookup?(model: string, id: string): Promise<StateValue[] | undefined>;
}

export interface ClusterStateStoreOptions {
  local: ReplicaTarget;
  db: ReplicaDb;
  mode: DistributedMode;
  /** How long a revoked grant is remembered (its records cannot outlive this). */
  revocationTtlMs: number;
  /** Tombstone lifetime for sweep(). */
  tombstoneTtlMs: number;
  coordination?: Coordination;
  onError?: (err: Error, what: string) => void;
}

/**
 * The StateStore the issuer uses on a cluster node: reads from the local SQLite store, writes
 * to it and to the replicated map; applies what peers replicate.
 */
export class ClusterStateStore implements StateStore {
  readonly nodeId: string;
  private readonly local: ReplicaTarget;
  private readonly db: ReplicaDb;

  constructor(private readonly o: ClusterStateStoreOptions) {
    this.local = o.local;
    this.db = o.db;
    this.nodeId = o.local.nodeId;
    o.db.onChange((changes) => this.applyRemote(changes));
  }

  replicates(model: string): boolean {
    const cls = classifyModel(model);
    return cls === 'durable' || (cls === 'protocol' && this.o.mode !== 'off');
  }

  private get forwarding(): boolean {
    return this.o.mode === 'forwarding' || this.o.mode === 'strict';
  }

  private isRevoked(grantId: string | null | undefined): boolean {
    return !!grantId && this.db.value(KIND.revokedGrant, grantId) !== undefined;
  }

  private publish(rec: StateRecord): void {
    const v: StateValue = {
      model: rec.model,
      id: rec.id,
      payload: rec.payload,
      expiresAt: rec.expiresAt,
      consumedAt: rec.consumedAt,
      origin: rec.origin,
    };
    this.db.localSet(KIND.state, stateKey(rec.model, rec.id), v);
  }

  async upsert(model: string, id: string, payload: StatePayload, expiresInSeconds?: number | null): Promise<void> {
    await this.local.upsert(model, id, payload, expiresInSeconds);
    if (!this.replicates(model)) return;
    const rec = await this.local.find(model, id);
    if (!rec) return;
    // A grant revoked elsewhere (e.g. a replayed code on another node) takes its late records with it.
    if (this.isRevoked(rec.grantId)) {
      await this.local.destroy(model, id);
      return;
    }
    this.publish(rec);
  }

  async find(model: string, id: string): Promise<StateRecord | undefined> {
    const rec = await this.local.find(model, id);
    if (rec || !this.forwarding || !QUORUM_MODELS.has(model) || !this.o.coordination?.lookup) return rec;
    // A code or refresh token issued on another node moments ago (a load balancer sent the
    // token request elsewhere): fetch it from the peers instead of waiting for gossip. Its
    // consumption is then forwarded to its issuer as usual.
    const bundle = await this.o.coordination.lookup(model, id);
    const main = bundle?.[0];
    if (!main || main.model !== model || main.id !== id) return undefined;
    for (const v of bundle!) {
      if (!v || typeof v.model !== 'string' || typeof v.id !== 'string' || !this.replicates(v.model)) continue;
      if (this.isRevoked(v.payload?.grantId as string | undefined) || this.db.get(KIND.state, stateKey(v.model, v.id))?.d) continue;
      if (v !== main && (await this.local.find(v.model, v.id))) continue; // ours is as new or newer
      this.local.applyReplica(v);
    }
    return this.local.find(model, id);
  }

  /** A peer's lookup: this node's copy of a record plus its grant, session and account. */
  async lookupLocal(model: string, id: string): Promise<StateValue[] | undefined> {
    const rec = await this.local.find(model, id);
    if (!rec || this.isRevoked(rec.grantId)) return undefined;
    const related: Array<StateRecord | undefined> = [];
    const p = rec.payload;
    if (typeof p.grantId === 'string') related.push(await this.local.find('Grant', p.grantId));
    if (typeof p.sessionUid === 'string') related.push(await this.local.findByUid('Session', p.sessionUid));
    if (typeof p.accountId === 'string') related.push(await this.local.find('Account', p.accountId));
    const value = (r: StateRecord): StateValue => ({ model: r.model, id: r.id, payload: r.payload, expiresAt: r.expiresAt, consumedAt: r.consumedAt, origin: r.origin });
    return [value(rec), ...related.filter((r): r is StateRecord => !!r).map(value)];
  }

  findByUid(model: string, uid: string): Promise<StateRecord | undefined> {
    return this.local.findByUid(model, uid);
  }

  findByUserCode(model: string, userCode: string): Promise<StateRecord | undefined> {
    return this.local.findByUserCode(model, userCode);
  }

  list(model: string): Promise<StateRecord[]> {
    return this.local.list(model);
  }

  async consumeOnce(model: string, id: string): Promise<ConsumeResult> {
    if (!this.replicates(model)) return this.local.consumeOnce(model, id);
    const rec = await this.local.find(model, id);
    if (!rec) return 'not_found';
    const c = this.o.coordination;
    if (this.o.mode === 'strict' && QUORUM_MODELS.has(model) && rec.consumedAt === null) await c?.approve?.(rec);
    if (this.forwarding && c && rec.origin !== this.nodeId && c.isPeer(rec.origin)) {
      // Zero replay window: only the issuing node decides who wins.
      const answer = await c.consumeAt(rec.origin, model, id);
      if (answer.consumedAt !== null) {
        this.local.applyReplica({ ...rec, consumedAt: answer.consumedAt });
      }
      return answer.result;
    }
    return this.consumeLocally(model, id);
  }

  /** The atomic local consumption, published so every node learns the record is used. */
  async consumeLocally(model: string, id: string): Promise<ConsumeResult> {
    const result = await this.local.consumeOnce(model, id);
    if (result === 'consumed' && this.replicates(model)) {
      const rec = await this.local.find(model, id);
      if (rec) this.publish(rec);
    }
    return result;
  }

  async destroy(model: string, id: string): Promise<void> {
    await this.local.destroy(model, id);
    if (this.replicates(model)) this.db.localRemove(KIND.state, stateKey(model, id));
  }

  async revokeByGrantId(grantId: string): Promise<number> {
    const n = await this.local.revokeByGrantId(grantId);
    if (this.o.mode !== 'off') {
      const now = Date.now();
      this.db.localSet(KIND.revokedGrant, grantId, { at: now, expiresAt: now + this.o.revocationTtlMs } satisfies RevokedGrant);
    }
    return n;
  }

  async sweep(): Promise<number> {
    const n = await this.local.sweep();
    this.db.gc(this.o.tombstoneTtlMs);
    return n;
  }

  countLive(): Promise<Record<string, number>> {
    return this.local.countLive();
  }

  async close(): Promise<void> {
    await this.local.close();
  }

  /**
   * At start: local records the replica does not know (written before clustering, or before
   * a crash between the two writes) are published; replicated records missing or stale here
   * are applied; revoked grants are enforced.
   */
  reconcile(): { published: number; applied: number; removed: number } {
    let published = 0;
    let applied = 0;
    let removed = 0;
    const localRecs = new Map(this.local.liveRecords().map((r) => [stateKey(r.model, r.id), r]));
    for (const { key, state } of this.db.states(KIND.state)) {
      const v = this.db.visible(KIND.state, state) as StateValue | undefined;
      const mine = localRecs.get(key);
      if (!v) {
        if (mine && state.d !== null) {
          void this.local.destroy(mine.model, mine.id);
          removed++;
        }
        continue;
      }
      if (!this.replicates(v.model) || this.isRevoked(v.payload.grantId as string | undefined)) continue;
      if (mine && mine.consumedAt !== null && v.consumedAt === null) continue; // published below
      this.local.applyReplica(v);
      applied++;
    }
    for (const [key, rec] of localRecs) {
      if (!this.replicates(rec.model)) continue;
      const s = this.db.get(KIND.state, key);
      const v = s ? (this.db.visible(KIND.state, s) as StateValue | undefined) : undefined;
      if (!s || (v && rec.consumedAt !== null && v.consumedAt === null)) {
        this.publish(rec);
        published++;
      }
    }
    for (const { key } of this.db.entries(KIND.revokedGrant)) void this.local.revokeByGrantId(key);
    return { published, applied, removed };
  }

  private applyRemote(changes: readonly Change[]): void {
    for (const ch of changes) {
      if (!ch.remote) continue;
      try {
        if (ch.kind === KIND.state) this.applyState(ch);
        else if (ch.kind === KIND.revokedGrant && ch.present) {
          this.local.revokeByGrantId(ch.key).catch((e) => this.o.onError?.(e as Error, 'revoke grant'));
        }
      } catch (e) {
        this.o.onError?.(e as Error, `apply ${ch.kind}`);
      }
    }
  }

  private applyState(ch: Change): void {
    const v = ch.value as StateValue | undefined;
    if (v) {
      if (!this.replicates(v.model)) return;
      if (this.isRevoked(v.payload.grantId as string | undefined)) {
        void this.local.destroy(v.model, v.id);
        return;
      }
      this.local.applyReplica(v);
      return;
    }
    const [model, id] = ch.key.split('\u0000') as [string, string];
    if (model && id && this.replicates(model)) void this.local.destroy(model, id);
  }
}
