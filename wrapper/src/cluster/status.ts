// `kiwi-id cluster status` reads the node's replica database directly (it works whether or not
// `kiwi-id run` is up; SQLite WAL lets it read while the wrapper writes).
import fs from 'node:fs';
import type { KiwiConfig } from '../config/config.js';
import { peerHost } from '../config/cluster.js';
import { clusterPaths } from './pki.js';
import { CLUSTER_DB_FILE, ReplicaDb } from './replica-db.js';
import { KIND, defineKinds } from './replicated-state.js';
import type { NodeEntry } from './node-entry.js';

export interface StatusReport {
  node_id: string;
  mode: string;
  interval_secs: number;
  member: boolean;
  nodes: Array<{ node_id: string; self: boolean; issuer?: string; started_at?: number; kanidm_replication: boolean }>;
  peers: Array<{ node_id: string; url: string; last_contact_at: number | null; last_contact_ago_s: number | null; last_error: string | null; lag_entries: number; lag_seconds: number; live: boolean }>;
  entries: Record<string, { present: number; total: number }>;
}

export function readStatus(cfg: KiwiConfig, now = Date.now()): StatusReport {
  const c = cfg.cluster;
  const p = clusterPaths(cfg.data_dir);
  const base = { node_id: c.node_id, mode: c.cluster.distributed_mode, interval_secs: c.gossip.interval_secs };
  if (!fs.existsSync(p.nodeCert) || !fs.existsSync(`${p.dir}/${CLUSTER_DB_FILE}`)) {
    return { ...base, member: fs.existsSync(p.nodeCert), nodes: [], peers: [], entries: {} };
  }
  const db = new ReplicaDb({ dir: p.dir, node: c.node_id });
  try {
    defineKinds(db);
    const liveWithin = 3 * c.gossip.interval_secs * 1000;
    return {
      ...base,
      member: true,
      nodes: db.entries<NodeEntry>(KIND.node).map(({ value }) => ({
        node_id: value.node_id,
        self: value.node_id === c.node_id,
        issuer: value.issuer,
        started_at: value.started_at,
        kanidm_replication: !!value.kanidm,
      })),
      peers: c.gossip.peers.map((url) => {
        const row = db.peer(peerHost(url));
        const lag = db.lagSince(row.acked_seq, row.node_id);
        return {
          node_id: row.node_id,
          url,
          last_contact_at: row.last_contact_at,
          last_contact_ago_s: row.last_contact_at === null ? null : Math.round((now - row.last_contact_at) / 1000),
          last_error: row.last_error_at && row.last_error_at > (row.last_contact_at ?? 0) ? row.last_error : null,
          lag_entries: lag.entries,
          lag_seconds: Math.round(lag.seconds * 10) / 10,
          live: row.last_contact_at !== null && now - row.last_contact_at < liveWithin,
        };
      }),
      entries: db.counts(),
    };
  } finally {
    db.close();
  }
}

export function formatStatus(s: StatusReport): string {
  const lines = [`node ${s.node_id}  mode ${s.mode}  interval ${s.interval_secs}s  ${s.member ? 'member' : 'not a member (run `kiwi-id cluster init` or `join`)'}`];
  if (s.peers.length) {
    lines.push('', 'PEER'.padEnd(28) + 'STATE'.padEnd(8) + 'LAST CONTACT'.padEnd(16) + 'LAG');
    for (const p of s.peers) {
      const ago = p.last_contact_ago_s === null ? 'never' : `${p.last_contact_ago_s}s ago`;
      lines.push(
        p.node_id.padEnd(28) + (p.live ? 'live' : 'down').padEnd(8) + ago.padEnd(16) + `${p.lag_entries} entries, ${p.lag_seconds}s` + (p.last_error ? `  (${p.last_error})` : ''),
      );
    }
  }
  if (s.nodes.length) {
    lines.push('', 'NODES KNOWN TO THE CLUSTER');
    for (const n of s.nodes) lines.push(`  ${n.node_id}${n.self ? ' (this node)' : ''}${n.kanidm_replication ? '  kanidm replication' : ''}`);
  }
  const e = Object.entries(s.entries);
  if (e.length) lines.push('', 'REPLICATED ' + e.map(([k, v]) => `${k}=${v.present}`).join(' '));
  return lines.join('\n') + '\n';
}
