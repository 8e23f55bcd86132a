// Prometheus metrics of the cluster layer, registered on the wrapper's registry (/metrics).
import { Counter, Gauge, type Registry } from 'prom-client';

export interface ClusterMetrics {
  rounds: Counter<'peer' | 'result'>;
  mergedEntries: Counter<'peer'>;
  lagSeconds: Gauge<'peer'>;
  lagEntries: Gauge<'peer'>;
  rejected: Counter<'reason'>;
  forwarded: Counter<'op' | 'result'>;
  quorum: Counter<'result'>;
  livePeers: Gauge;
}

export function createClusterMetrics(registry: Registry): ClusterMetrics {
  const registers = [registry];
  return {
    rounds: new Counter({ name: 'kiwi_gossip_rounds_total', help: 'Gossip exchanges with a peer, by result (ok, error, rejected)', labelNames: ['peer', 'result'], registers }),
    mergedEntries: new Counter({ name: 'kiwi_gossip_received_entries_total', help: 'Replicated entries received from a peer', labelNames: ['peer'], registers }),
    lagSeconds: new Gauge({ name: 'kiwi_gossip_lag_seconds', help: 'Age of the oldest local change a peer has not acknowledged (0 = in sync)', labelNames: ['peer'], registers }),
    lagEntries: new Gauge({ name: 'kiwi_gossip_lag_entries', help: 'Local changes a peer has not acknowledged', labelNames: ['peer'], registers }),
    rejected: new Counter({ name: 'kiwi_gossip_rejected_envelopes_total', help: 'Envelopes dropped before merge (unlisted node, bad signature, too old, ...)', labelNames: ['reason'], registers }),
    forwarded: new Counter({ name: 'kiwi_cluster_forwarded_total', help: 'Operations forwarded to the node that issued a record (distributed_mode forwarding/strict)', labelNames: ['op', 'result'], registers }),
    quorum: new Counter({ name: 'kiwi_cluster_quorum_total', help: 'Strict-mode quorum checks before token issuance, by result', labelNames: ['result'], registers }),
    livePeers: new Gauge({ name: 'kiwi_cluster_live_peers', help: 'Peers with a successful gossip exchange within three intervals', registers }),
  };
}
