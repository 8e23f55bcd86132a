// What each node publishes about itself through gossip (one `node` entry
// per node): how to reach it, its mode, and its Kanidm's replication identity.
// Read by the cluster status, the Kanidm replication coordinator and the node itself.
export interface NodeEntry {
  node_id: string;
  gossip_url: string;
  issuer: string;
  mode: string;
  started_at: number;
  /** Kanidm replication: its origin, identity certificate and partners (kanidm-replication.ts). */
  kanidm?: KanidmReplicaInfo | null;
}

export interface KanidmReplicaInfo {
  /** `repl://host:port`, where partners reach this node's Kanidm replication listener. */
  origin: string;
  /** Base64 DER of Kanidm's replication identity certificate (as printed by Kanidm). */
  certificate: string;
  /** Node ids this node's Kanidm is configured to replicate with. */
  partners: string[];
}
