// distributed_mode = "strict": forwarding, plus a quorum of peers approves every token issuance
// before it happens: redeeming an authorization code, rotating a refresh token, and
// client_credentials (index.ts wraps that grant's handler). A peer
// approves unless its replica says the grant was revoked or the code/token was already used or
// removed; one denial refuses the request. `quorum_k` approvals are needed; 0 means a majority
// of the live peers, floor(live_peer_count / 2) + 1, as in the reference (a live peer had a
// successful gossip exchange within three intervals). When the approvals do not arrive within
// `quorum_timeout_ms`, the request is refused, or with `quorum_fallback = true` the token is
// issued with a warning in the log.
import type { Logger } from 'pino';
import type { StateRecord } from '../../state/store.js';
import type { Envelope } from '../envelope.js';
import { ClusterUnavailableError, QuorumDeniedError } from '../errors.js';
import type { ClusterMetrics } from '../metrics.js';
import { KIND, stateKey, type StateValue } from '../replicated-state.js';
import type { ReplicaDb } from '../replica-db.js';
import { PATHS, type ClusterClient } from '../transport.js';

/** The vote `model` for a client_credentials issuance (`id` = client_id). */
export const CLIENT_ISSUANCE = 'client_credentials';

export interface VoteRequest {
  model: string;
  id: string;
  grantId: string | null;
}
export interface VoteReply {
  approve: boolean;
  reason?: string;
}

export interface QuorumOptions {
  client: ClusterClient;
  peers: readonly string[];
  livePeers: () => string[];
  k: number;
  timeoutMs: number;
  fallback: boolean;
  log: Logger;
  metrics: ClusterMetrics;
}

export class Quorum {
  constructor(private readonly o: QuorumOptions) {}

  required(): number {
    return this.o.k > 0 ? this.o.k : Math.floor(this.o.livePeers().length / 2) + 1;
  }

  async approve(rec: Pick<StateRecord, 'model' | 'id' | 'grantId'>): Promise<void> {
    const need = this.required();
    const req: VoteRequest = { model: rec.model, id: rec.id, grantId: rec.grantId };
    const outcome = await new Promise<{ approvals: number; denied?: string }>((resolve) => {
      let approvals = 0;
      let answered = 0;
      let done = false;
      const finish = (r: { approvals: number; denied?: string }) => {
        if (!done) {
          done = true;
          clearTimeout(timer);
          resolve(r);
        }
      };
      const timer = setTimeout(() => finish({ approvals }), this.o.timeoutMs);
      if (this.o.peers.length === 0) finish({ approvals });
      for (const url of this.o.peers) {
        this.o.client
          .call<VoteReply>(url, PATHS.vote, req, this.o.timeoutMs)
          .then((r) => {
            if (r?.approve === true) approvals++;
            else if (r?.approve === false) finish({ approvals, denied: String(r.reason ?? 'denied') });
          })
          .catch(() => undefined)
          .finally(() => {
            answered++;
            if (approvals >= need) finish({ approvals });
            else if (answered === this.o.peers.length) finish({ approvals });
          });
      }
    });
    if (outcome.denied) {
      this.o.metrics.quorum.inc({ result: 'denied' });
      throw new QuorumDeniedError(`refused by the cluster: ${outcome.denied}`);
    }
    if (outcome.approvals >= need) {
      this.o.metrics.quorum.inc({ result: 'approved' });
      return;
    }
    if (this.o.fallback) {
      this.o.metrics.quorum.inc({ result: 'fallback' });
      this.o.log.warn({ approvals: outcome.approvals, required: need, model: rec.model }, 'quorum not reached; issuing anyway (quorum_fallback = true)');
      return;
    }
    this.o.metrics.quorum.inc({ result: 'unavailable' });
    throw new ClusterUnavailableError(`quorum not reached (${outcome.approvals} of ${need} approvals)`);
  }
}

/** A peer's vote: approve unless this replica knows the grant revoked or the record used/removed. */
export function voteHandler(db: ReplicaDb) {
  return async (env: Envelope<VoteRequest>): Promise<VoteReply> => {
    const { model, id, grantId } = env.body ?? ({} as VoteRequest);
    if (typeof model !== 'string' || typeof id !== 'string') return { approve: false, reason: 'malformed vote request' };
    if (grantId && db.value(KIND.revokedGrant, grantId) !== undefined) return { approve: false, reason: 'grant revoked' };
    if (model === CLIENT_ISSUANCE) {
      // client_credentials: refused when this replica knows the client removed.
      const c = db.get(KIND.client, id);
      return c && db.visible(KIND.client, c) === undefined ? { approve: false, reason: 'client removed' } : { approve: true };
    }
    const s = db.get(KIND.state, stateKey(model, id));
    if (s) {
      const v = db.visible(KIND.state, s) as StateValue | undefined;
      if (!v && s.d !== null) return { approve: false, reason: `${model} removed` };
      if (v && v.consumedAt !== null) return { approve: false, reason: `${model} already used` };
    }
    return { approve: true };
  };
}
