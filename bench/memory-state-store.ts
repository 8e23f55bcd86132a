// A StateStore in a Map, for bench/token.ts only: the token endpoint with no
// durable state at all, to show how much of a refresh grant's cost is the
// SQLite store and what oidc-provider + HTTP + signing cost on their own (the
// ceiling of any store). Not a product option: nothing survives a restart and
// nothing is shared between processes.
import { upsertColumns, type ConsumeResult, type StatePayload, type StateRecord, type StateStore } from '../wrapper/src/state/store.js';

interface Entry {
  model: string;
  id: string;
  /** Stored as JSON text, as SQLite holds it: every read parses a fresh copy. */
  payload: string;
  grantId: string | null;
  userCode: string | null;
  uid: string | null;
  expiresAt: number | null;
  consumedAt: number | null;
}

const isLive = (e: Entry) => e.expiresAt === null || e.expiresAt > Date.now();

export class MemoryStateStore implements StateStore {
  readonly nodeId = 'local';
  private readonly entries = new Map<string, Entry>();

  private live(model: string, id: string): Entry | undefined {
    const e = this.entries.get(`${model}\0${id}`);
    return e && isLive(e) ? e : undefined;
  }

  private record(e: Entry | undefined): StateRecord | undefined {
    if (!e) return undefined;
    const { payload, ...rest } = e;
    return { ...rest, payload: JSON.parse(payload) as StatePayload, origin: this.nodeId };
  }

  private first(pred: (e: Entry) => boolean): StateRecord | undefined {
    for (const e of this.entries.values()) if (pred(e) && isLive(e)) return this.record(e);
    return undefined;
  }

  async upsert(model: string, id: string, payload: StatePayload, expiresInSeconds?: number | null): Promise<void> {
    const columns = upsertColumns(payload, expiresInSeconds, Date.now());
    // Replacing a live record keeps its consumed mark, as in the SQLite store.
    const consumedAt = this.live(model, id)?.consumedAt ?? columns.consumedAt;
    this.entries.set(`${model}\0${id}`, { model, id, ...columns, consumedAt });
  }

  async find(model: string, id: string) {
    return this.record(this.live(model, id));
  }

  async findByUid(model: string, uid: string) {
    return this.first((e) => e.model === model && e.uid === uid);
  }

  async findByUserCode(model: string, userCode: string) {
    return this.first((e) => e.model === model && e.userCode === userCode);
  }

  async list(model: string) {
    return [...this.entries.values()].filter((e) => e.model === model && isLive(e)).map((e) => this.record(e)!);
  }

  async consumeOnce(model: string, id: string): Promise<ConsumeResult> {
    const e = this.live(model, id);
    if (!e) return 'not_found';
    if (e.consumedAt !== null) return 'already_consumed';
    e.consumedAt = Date.now();
    return 'consumed';
  }

  async destroy(model: string, id: string) {
    this.entries.delete(`${model}\0${id}`);
  }

  async revokeByGrantId(grantId: string) {
    let n = 0;
    for (const [k, e] of this.entries) if (e.grantId === grantId && this.entries.delete(k)) n++;
    return n;
  }

  async sweep() {
    let n = 0;
    for (const [k, e] of this.entries) if (e.expiresAt !== null && e.expiresAt <= Date.now() && this.entries.delete(k)) n++;
    return n;
  }

  async countLive() {
    const out: Record<string, number> = {};
    for (const e of this.entries.values()) if (isLive(e)) out[e.model] = (out[e.model] ?? 0) + 1;
    return out;
  }

  async close() {}
}
