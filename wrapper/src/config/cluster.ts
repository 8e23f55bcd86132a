// `node_id`, `issuer_aliases`, `[gossip]` and `[cluster]`: several Kiwi ID nodes acting as one
// identity provider. Semantics follow the ahdapa configuration reference (shared/seeds); the
// keys Kiwi ID adds (gossip listener, Kanidm replication) are documented in README.
//
// Everything is optional: without `[gossip] peers` the node runs alone, exactly as before.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { isTable, tomlType, type Table } from './toml-types.js';
import { urlHost } from './url-host.js';

export const DISTRIBUTED_MODES = ['off', 'eventual', 'forwarding', 'strict'] as const;
export type DistributedMode = (typeof DISTRIBUTED_MODES)[number];

export interface GossipConfig {
  /** Peer base URLs (https://host:port of their gossip listener); the entry naming this node is dropped. */
  readonly peers: readonly string[];
  readonly interval_secs: number;
  /** Always enforced: empty means nobody may join or gossip (fail closed). */
  readonly allowed_node_ids: readonly string[];
  /** Tombstone lifetime, and the maximum age of an accepted envelope. */
  readonly tombstone_ttl_secs: number;
  /** Where this node's mutually authenticated cluster listener binds (host:port). */
  readonly listen_host: string;
  readonly listen_port: number;
}

export interface ClusterModeConfig {
  readonly distributed_mode: DistributedMode;
  readonly quorum_k: number;
  readonly quorum_timeout_ms: number;
  readonly quorum_fallback: boolean;
  /** Kiwi ID coordinates Kanidm's own replication (partner certificates, refresh, restart). */
  readonly kanidm_replication: boolean;
  /** Kanidm's replication listener (its `[replication] bindaddress`). */
  readonly kanidm_replication_host: string;
  readonly kanidm_replication_port: number;
}

export interface ClusterConfig {
  readonly node_id: string;
  readonly issuer_aliases: readonly string[];
  readonly gossip: GossipConfig;
  readonly cluster: ClusterModeConfig;
  /** True when `[gossip] peers` names at least one other node. */
  readonly enabled: boolean;
}

export const CLUSTER_TOP_KEYS = ['node_id', 'issuer_aliases', 'gossip', 'cluster'] as const;
const GOSSIP_KEYS = ['peers', 'interval_secs', 'allowed_node_ids', 'tombstone_ttl_secs', 'listen_addr'];
const CLUSTER_KEYS = [
  'distributed_mode', 'quorum_k', 'quorum_timeout_ms', 'quorum_fallback', 'kanidm_replication', 'kanidm_replication_addr',
];

export const GOSSIP_DEFAULT_PORT = 8445;
export const KANIDM_REPLICATION_DEFAULT_PORT = 8444;

/** node_id is the hostname part of peer URLs: DNS name or IP literal. */
const NODE_ID = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function checkNodeId(v: string): string {
  if (net.isIP(v) === 4 || (net.isIP(v) === 0 && NODE_ID.test(v) && !/^[\d.]+$/.test(v))) return v.toLowerCase();
  throw new Error(`${JSON.stringify(v)} is not a hostname or IPv4 address (it must be the host part of this node's peer URL)`);
}

/** $HOSTNAME, else the kernel's hostname (as the reference does). */
export function defaultNodeId(): string {
  const fromEnv = process.env.HOSTNAME?.trim();
  if (fromEnv) return fromEnv;
  try {
    return fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim() || os.hostname();
  } catch {
    return os.hostname();
  }
}

/** The hostname of a peer URL, lower-case, IPv6 brackets removed. */
export function peerHost(url: string): string {
  return urlHost(url).toLowerCase();
}

type Fail = (key: string, problem: string) => Error;

function section(raw: Table, key: string, fail: Fail): Table {
  const v = raw[key] ?? {};
  if (!isTable(v)) throw fail(key, `expected a table, got ${tomlType(v)}`);
  return v;
}

function stringList(t: Table, key: string, fail: Fail): string[] {
  const v = t[key] ?? [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s === '')) {
    throw fail(key, `expected a list of non-empty strings, got ${tomlType(v)}`);
  }
  return v as string[];
}

function integer(t: Table, key: string, fallback: number, min: number, fail: Fail): number {
  const v = t[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw fail(key, `expected an integer >= ${min}, got ${tomlType(v)} ${String(v)}`);
  }
  return v;
}

function bool(t: Table, key: string, fallback: boolean, fail: Fail): boolean {
  const v = t[key] ?? fallback;
  if (typeof v !== 'boolean') throw fail(key, `expected true or false, got ${tomlType(v)}`);
  return v;
}

function httpsBase(s: string, what: string): string {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new Error(`${JSON.stringify(s)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new Error(`${JSON.stringify(s)} must use https:// (${what})`);
  if (url.username || url.password || url.search || url.hash) {
    throw new Error(`${JSON.stringify(s)} must not contain credentials, a query or a fragment`);
  }
  return s.replace(/\/+$/, '');
}

/**
 * Parses the cluster keys of a config table. `fail(key, problem)` makes the caller's
 * one-line "FILE: KEY: problem" error; `listenHost` is the wrapper's listener host (the
 * default bind host of the cluster listeners) and `parseAddr` its host:port parser.
 */
export function parseClusterConfig(
  raw: Table,
  listenHost: string,
  parseAddr: (s: string) => { host: string; port: number },
  fail: Fail,
): ClusterConfig {
  const gossip = section(raw, 'gossip', fail);
  const cluster = section(raw, 'cluster', fail);
  const g: Fail = (k, p) => fail(`[gossip].${k}`, p);
  const c: Fail = (k, p) => fail(`[cluster].${k}`, p);
  for (const k of Object.keys(gossip)) if (!GOSSIP_KEYS.includes(k)) throw g(k, 'unknown key');
  for (const k of Object.keys(cluster)) if (!CLUSTER_KEYS.includes(k)) throw c(k, 'unknown key');

  const rawNodeId = raw.node_id ?? defaultNodeId();
  if (typeof rawNodeId !== 'string' || rawNodeId === '') throw fail('node_id', `expected a non-empty string, got ${tomlType(rawNodeId)}`);
  let node_id: string;
  try {
    node_id = checkNodeId(rawNodeId);
  } catch (e) {
    throw fail('node_id', (e as Error).message);
  }

  const issuer_aliases = stringList(raw, 'issuer_aliases', fail).map((s) => {
    try {
      const base = httpsBase(s, 'an issuer URL');
      if (s.endsWith('/')) throw new Error(`${JSON.stringify(s)} must not end with a slash`);
      return base;
    } catch (e) {
      throw fail('issuer_aliases', (e as Error).message);
    }
  });

  const peersAll = stringList(gossip, 'peers', g).map((s) => {
    try {
      return httpsBase(s, 'the peer\'s gossip listener');
    } catch (e) {
      throw g('peers', (e as Error).message);
    }
  });
  // One peers list can be shared by every node: the entry whose host is this node_id is this node.
  const own = peersAll.find((p) => peerHost(p) === node_id);
  const peers = [...new Set(peersAll.filter((p) => peerHost(p) !== node_id))];
  const allowed_node_ids = stringList(gossip, 'allowed_node_ids', g).map((s) => {
    try {
      return checkNodeId(s);
    } catch (e) {
      throw g('allowed_node_ids', (e as Error).message);
    }
  });
  const interval_secs = integer(gossip, 'interval_secs', 5, 1, g);
  const tombstone_ttl_secs = integer(gossip, 'tombstone_ttl_secs', 604800, 1, g);
  if (tombstone_ttl_secs <= interval_secs) {
    throw g('tombstone_ttl_secs', `must be greater than interval_secs (${tombstone_ttl_secs} <= ${interval_secs})`);
  }
  const defaultGossipPort = own ? Number(new URL(own).port || 443) : GOSSIP_DEFAULT_PORT;
  let listen = { host: listenHost, port: defaultGossipPort };
  if (gossip.listen_addr !== undefined) {
    if (typeof gossip.listen_addr !== 'string') throw g('listen_addr', `expected "host:port", got ${tomlType(gossip.listen_addr)}`);
    try {
      listen = parseAddr(gossip.listen_addr);
    } catch (e) {
      throw g('listen_addr', (e as Error).message);
    }
  }

  const mode = cluster.distributed_mode ?? 'off';
  if (typeof mode !== 'string' || !(DISTRIBUTED_MODES as readonly string[]).includes(mode)) {
    throw c('distributed_mode', `${JSON.stringify(mode)} is not a mode (use one of ${DISTRIBUTED_MODES.join(', ')})`);
  }
  let repl = { host: listenHost, port: KANIDM_REPLICATION_DEFAULT_PORT };
  if (cluster.kanidm_replication_addr !== undefined) {
    if (typeof cluster.kanidm_replication_addr !== 'string') {
      throw c('kanidm_replication_addr', `expected "host:port", got ${tomlType(cluster.kanidm_replication_addr)}`);
    }
    try {
      repl = parseAddr(cluster.kanidm_replication_addr);
    } catch (e) {
      throw c('kanidm_replication_addr', (e as Error).message);
    }
  }
  const enabled = peers.length > 0;
  return Object.freeze({
    node_id,
    issuer_aliases: Object.freeze(issuer_aliases),
    gossip: Object.freeze({
      peers: Object.freeze(peers),
      interval_secs,
      allowed_node_ids: Object.freeze(allowed_node_ids),
      tombstone_ttl_secs,
      listen_host: listen.host,
      listen_port: listen.port,
    }),
    cluster: Object.freeze({
      distributed_mode: mode as DistributedMode,
      quorum_k: integer(cluster, 'quorum_k', 0, 0, c),
      quorum_timeout_ms: integer(cluster, 'quorum_timeout_ms', 500, 1, c),
      quorum_fallback: bool(cluster, 'quorum_fallback', false, c),
      kanidm_replication: bool(cluster, 'kanidm_replication', enabled, c),
      kanidm_replication_host: repl.host,
      kanidm_replication_port: repl.port,
    }),
    enabled,
  });
}
