// Gossip rounds. Every `interval_secs` this node exchanges with each peer, in parallel:
//   push: its rows changed since what the peer acknowledged (everything on first contact after
//         a start, and after an error: "full state on first contact or after an error")
//   pull: the peer's rows changed since the last position of the peer's log merged here
//         (persisted with the merge, so a restart resumes where it was)
// Both directions page through large logs (10k records: a few pages, same round). Positions
// carry the log's epoch, so a wiped peer is resynchronised from the start.

import type { Logger } from 'pino';
import { EnvelopeRejected, type Envelope } from './envelope.js';
import { peerHost } from '../config/cluster.js';
import type { ClusterMetrics } from './metrics.js';
import type { DeltaItem, ReplicaDb } from './replica-db.js';
import { PATHS, type ClusterClient } from './transport.js';

export interface GossipRequest {
  epoch: string;
  push: { from: number; items: DeltaItem[]; upto: number; more: boolean };
  pull: { epoch: string | null; since: number };
}

export interface GossipReply {
  epoch: string;
  /** The requester's log position now merged here (null: not gap-free, resend from 0). */
  ack: number | null;
  pull: { items: DeltaItem[]; upto: number; more: boolean };
}

export interface GossipOptions {
  db: ReplicaDb;
  client: ClusterClient;
  peers: readonly string[];
  intervalMs: number;
  timeoutMs?: number;
  pageSize?: number;
  log: Logger;
  metrics: ClusterMetrics;
  /** Dropped before merge when false (e.g. node entries of unlisted nodes). */
  accept: (from: string, item: DeltaItem) => boolean;
  /** Runs before each round (e.g. publish a changed clients file). */
  beforeRound?: () => void;
}

export interface PeerStatus {
  node_id: string;
  url: string;
  last_contact_at: number | null;
  last_error: string | null;
  /** Rows this node has that the peer has not acknowledged, and the age of the oldest. */
  lag_entries: number;
  lag_seconds: number;
  live: boolean;
}

const MAX_PAGES_PER_ROUND = 200;

export class Gossip {
  /** Local log position each peer has acknowledged; 0 = send everything (first contact / after error). */
  private readonly acked = new Map<string, number>();
  private readonly lastContact = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly pageSize: number;
  private readonly timeoutMs: number;
  readonly peerIds: string[];

  constructor(private readonly o: GossipOptions) {
    this.pageSize = o.pageSize ?? 1000;
    this.timeoutMs = o.timeoutMs ?? Math.max(5000, o.intervalMs);
    this.peerIds = o.peers.map(peerHost);
  }

  start(): void {
    this.stopped = false;
    const loop = () => {
      if (this.stopped) return;
      this.running = this.round().finally(() => {
        this.running = null;
        if (!this.stopped) this.timer = setTimeout(loop, this.o.intervalMs);
      });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One round with every peer (in parallel); resolves when all exchanges ended. */
  async round(): Promise<void> {
    try {
      this.o.beforeRound?.();
    } catch (e) {
      this.o.log.error({ err_message: (e as Error).message }, 'before gossip round');
    }
    await Promise.all(this.o.peers.map((url) => this.exchange(url)));
  }

  /** Runs an extra round now (used after local writes that should spread at once). */
  nudge(): Promise<void> {
    return this.running ?? this.round();
  }

  private async exchange(url: string): Promise<void> {
    const node = peerHost(url);
    const db = this.o.db;
    try {
      for (let page = 0; page < MAX_PAGES_PER_ROUND; page++) {
        const from = this.acked.get(node) ?? 0;
        const push = db.since(from, this.pageSize, node);
        const known = db.peer(node);
        const req: GossipRequest = {
          epoch: db.epoch,
          push: { from, items: push.items, upto: push.upto, more: push.more },
          pull: { epoch: known.recv_epoch, since: known.recv_epoch ? known.recv_seq : 0 },
        };
        const reply = await this.o.client.call<GossipReply>(url, PATHS.gossip, req, this.timeoutMs);
        const pulled = reply.pull;
        db.mergeRemote(node, pulled.items, (item) => this.o.accept(node, item), { epoch: reply.epoch, seq: pulled.upto });
        this.o.metrics.mergedEntries.inc({ peer: node }, pulled.items.length);
        this.acked.set(node, reply.ack ?? 0);
        if (!push.more && !pulled.more && reply.ack !== null) break;
      }
      const now = Date.now();
      this.lastContact.set(node, now);
      db.putPeer({ ...db.peer(node), url, last_contact_at: now, acked_seq: this.acked.get(node) ?? 0 });
      this.o.metrics.rounds.inc({ peer: node, result: 'ok' });
    } catch (err) {
      // Next contact sends everything again.
      this.acked.set(node, 0);
      const message = (err as Error).message;
      db.putPeer({ ...db.peer(node), url, acked_seq: 0, last_error: message.slice(0, 300), last_error_at: Date.now() });
      this.o.metrics.rounds.inc({ peer: node, result: err instanceof EnvelopeRejected ? 'rejected' : 'error' });
      this.o.log.debug({ peer: node, err_message: message }, 'gossip exchange failed');
    } finally {
      const lag = db.lagSince(this.acked.get(node) ?? 0, node);
      this.o.metrics.lagSeconds.set({ peer: node }, lag.seconds);
      this.o.metrics.lagEntries.set({ peer: node }, lag.entries);
    }
  }

  /** Server side of an exchange. */
  async handle(env: Envelope<GossipRequest>): Promise<GossipReply> {
    const db = this.o.db;
    const req = env.body;
    if (!req || typeof req.epoch !== 'string' || !req.push || !Array.isArray(req.push.items) || !req.pull) {
      throw new EnvelopeRejected('malformed', 'not a gossip request');
    }
    const known = db.peer(env.from);
    // A push is gap-free when it starts at or before what we already have of that log.
    const gapFree = req.push.from === 0 || (known.recv_epoch === req.epoch && known.recv_seq >= req.push.from);
    db.mergeRemote(env.from, req.push.items, (item) => this.o.accept(env.from, item), gapFree ? { epoch: req.epoch, seq: req.push.upto } : undefined);
    this.o.metrics.mergedEntries.inc({ peer: env.from }, req.push.items.length);
    const since = req.pull.epoch === db.epoch ? req.pull.since : 0;
    const page = db.since(since, this.pageSize, env.from);
    // An inbound exchange is contact too, and it is persisted like an outbound one so that
    // `kiwi-id cluster status` (which reads the database) and the quorum (which reads
    // livePeers()) agree on which peers are live.
    const now = Date.now();
    this.lastContact.set(env.from, now);
    db.putPeer({ ...db.peer(env.from), last_contact_at: now });
    return { epoch: db.epoch, ack: gapFree ? req.push.upto : null, pull: page };
  }

  /** Peers that exchanged successfully (either direction) within `withinMs`. */
  livePeers(withinMs = 3 * this.o.intervalMs): string[] {
    const now = Date.now();
    return this.peerIds.filter((p) => (this.lastContact.get(p) ?? 0) > now - withinMs);
  }

  status(): PeerStatus[] {
    const live = new Set(this.livePeers());
    return this.o.peers.map((url) => {
      const node = peerHost(url);
      const row = this.o.db.peer(node);
      const lag = this.o.db.lagSince(this.acked.get(node) ?? 0, node);
      return {
        node_id: node,
        url,
        last_contact_at: Math.max(row.last_contact_at ?? 0, this.lastContact.get(node) ?? 0) || null,
        last_error: row.last_error_at && row.last_error_at > (row.last_contact_at ?? 0) ? row.last_error : null,
        lag_entries: lag.entries,
        lag_seconds: lag.seconds,
        live: live.has(node),
      };
    });
  }
}
