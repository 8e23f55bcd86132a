// distributed_mode = "forwarding" (and "strict"): consuming a single-use record (an
// authorization code, a refresh token at rotation, Kanidm login state) is decided by the node
// that issued it (the record's `origin`), so two nodes can never both accept the same code: zero
// replay window. The issuing node answers with the outcome and when it consumed the record.
// When the issuing node cannot be reached the request fails (fail closed) with
// `temporarily_unavailable`; the client starts over (a new sign-in or, for a refresh token,
// once that node is back).
import type { Logger } from 'pino';
import type { ConsumeResult } from '../../state/store.js';
import { peerHost } from '../../config/cluster.js';
import type { Envelope } from '../envelope.js';
import { ClusterUnavailableError } from '../errors.js';
import type { ClusterMetrics } from '../metrics.js';
import { QUORUM_MODELS, type ClusterStateStore, type Coordination, type StateValue } from '../replicated-state.js';
import { PATHS, type ClusterClient } from '../transport.js';
import type { Quorum } from './strict.js';

export interface ConsumeRequest {
  model: string;
  id: string;
}
export interface ConsumeReply {
  result: ConsumeResult;
  consumedAt: number | null;
}

const RESULTS = new Set<ConsumeResult>(['consumed', 'already_consumed', 'not_found']);

export class Forwarder implements Coordination {
  private readonly urls: Map<string, string>;

  constructor(
    private readonly client: ClusterClient,
    peers: readonly string[],
    private readonly metrics: ClusterMetrics,
    private readonly log: Logger,
    private readonly timeoutMs: number,
    private readonly quorum?: Quorum,
  ) {
    this.urls = new Map(peers.map((u) => [peerHost(u), u]));
  }

  isPeer(origin: string): boolean {
    return this.urls.has(origin);
  }

  async consumeAt(origin: string, model: string, id: string): Promise<ConsumeReply> {
    const url = this.urls.get(origin)!;
    try {
      const r = await this.client.call<ConsumeReply>(url, PATHS.consume, { model, id } satisfies ConsumeRequest, this.timeoutMs);
      if (!RESULTS.has(r?.result) || (r.consumedAt !== null && typeof r.consumedAt !== 'number')) throw new Error('malformed reply');
      this.metrics.forwarded.inc({ op: 'consume', result: r.result });
      return r;
    } catch (e) {
      this.metrics.forwarded.inc({ op: 'consume', result: 'unavailable' });
      this.log.warn({ origin, model, err_message: (e as Error).message }, 'forwarded consumption failed: issuing node unreachable');
      throw new ClusterUnavailableError(`the node that issued this ${model} (${origin}) cannot be reached; try again`);
    }
  }

  /** Asks every peer at once; the first that has the record answers. */
  async lookup(model: string, id: string): Promise<StateValue[] | undefined> {
    const asks = [...this.urls.values()].map((url) =>
      this.client.call<{ records: StateValue[] | null }>(url, PATHS.find, { model, id } satisfies ConsumeRequest, this.timeoutMs).then((r) => {
        if (!Array.isArray(r?.records) || r.records.length === 0) throw new Error('not there');
        return r.records;
      }),
    );
    try {
      const found = await Promise.any(asks);
      this.metrics.forwarded.inc({ op: 'lookup', result: 'found' });
      return found;
    } catch {
      this.metrics.forwarded.inc({ op: 'lookup', result: 'not_found' });
      return undefined;
    }
  }

  approve = async (rec: Parameters<NonNullable<Coordination['approve']>>[0]): Promise<void> => {
    if (this.quorum) await this.quorum.approve(rec);
  };
}

/** A peer's side of a lookup: its copy of the record, if it has one. */
export function findHandler(store: ClusterStateStore) {
  return async (env: Envelope<ConsumeRequest>): Promise<{ records: StateValue[] | null }> => {
    const { model, id } = env.body ?? ({} as ConsumeRequest);
    if (typeof model !== 'string' || typeof id !== 'string' || !QUORUM_MODELS.has(model)) return { records: null };
    return { records: (await store.lookupLocal(model, id)) ?? null };
  };
}

/** The issuing node's side: consume locally (atomic) and say how it went. */
export function consumeHandler(store: ClusterStateStore) {
  return async (env: Envelope<ConsumeRequest>): Promise<ConsumeReply> => {
    const { model, id } = env.body ?? ({} as ConsumeRequest);
    if (typeof model !== 'string' || typeof id !== 'string' || !model || !id) throw new Error('consume: model and id required');
    const result = await store.consumeLocally(model, id);
    const rec = await store.find(model, id);
    return { result, consumedAt: rec?.consumedAt ?? null };
  };
}
