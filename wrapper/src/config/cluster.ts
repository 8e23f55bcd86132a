// `node_id`, `issuer_aliases`, `[gossip]` and `[cluster]`: several Kiwi ID nodes acting as one
// identity provider. Semantics follow the ahdapa configuration reference (shared/seeds); the
// keys Kiwi ID adds (gossip listener, Kanidm replication) are documented in README.
//
// Everything is optional: without `[gossip] peers` the node runs alone, exactly as before.

import fs from 'node:fs';
import os from 'node:os';
import { isIpv4OrHostname, parseListenAddr } from './addresses.js';
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

/** node_id is the hostname part of peer URLs: a DNS name or an IPv4 address. */
export function checkNodeId(v: string): string {
  if (isIpv4OrHostname(v)) return v.toLowerCase();
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

/** Each string of list `key`, checked by `check`; its Error becomes the key's. */
function checkedList(t: Table, key: string, check: (s: string) => string, fail: Fail): string[] {
  return stringList(t, key, fail).map((s) => {
    try {
      return check(s);
    } catch (e) {
      throw fail(key, (e as Error).message);
    }
  });
}

/** A "host:port" key, or `fallback` when absent. */
function address(t: Table, key: string, fallback: { host: string; port: number }, fail: Fail): { host: string; port: number } {
  const v = t[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'string') throw fail(key, `expected "host:port", got ${tomlType(v)}`);
  try {
    return parseListenAddr(v);
  } catch (e) {
    throw fail(key, (e as Error).message);
  }
}

/** node_id: this node's name, the host part of its peer URL; $HOSTNAME by default. */
function readNodeId(raw: Table, fail: Fail): string {
  const v = raw.node_id ?? defaultNodeId();
  if (typeof v !== 'string' || v === '') throw fail('node_id', `expected a non-empty string, got ${tomlType(v)}`);
  try {
    return checkNodeId(v);
  } catch (e) {
    throw fail('node_id', (e as Error).message);
  }
}

function issuerAlias(s: string): string {
  const base = httpsBase(s, 'an issuer URL');
  if (s.endsWith('/')) throw new Error(`${JSON.stringify(s)} must not end with a slash`);
  return base;
}

/**
 * [gossip]. One peers list can be shared by every node: the entry whose host
 * is this node_id is this node (its port is then the default listen port).
 */
function readGossip(gossip: Table, nodeId: string, listenHost: string, g: Fail): GossipConfig {
  const all = checkedList(gossip, 'peers', (s) => httpsBase(s, 'the peer\'s gossip listener'), g);
  const own = all.find((p) => peerHost(p) === nodeId);
  const peers = [...new Set(all.filter((p) => peerHost(p) !== nodeId))];
  const allowed_node_ids = checkedList(gossip, 'allowed_node_ids', checkNodeId, g);
  const interval_secs = integer(gossip, 'interval_secs', 5, 1, g);
  const tombstone_ttl_secs = integer(gossip, 'tombstone_ttl_secs', 604800, 1, g);
  if (tombstone_ttl_secs <= interval_secs) {
    throw g('tombstone_ttl_secs', `must be greater than interval_secs (${tombstone_ttl_secs} <= ${interval_secs})`);
  }
  const listen = address(gossip, 'listen_addr', { host: listenHost, port: own ? Number(new URL(own).port || 443) : GOSSIP_DEFAULT_PORT }, g);
  return Object.freeze({
    peers: Object.freeze(peers),
    interval_secs,
    allowed_node_ids: Object.freeze(allowed_node_ids),
    tombstone_ttl_secs,
    listen_host: listen.host,
    listen_port: listen.port,
  });
}

/** [cluster]: the distributed mode, its quorum, and Kanidm's replication (on by default in a cluster). */
function readClusterMode(cluster: Table, listenHost: string, enabled: boolean, c: Fail): ClusterModeConfig {
  const mode = cluster.distributed_mode ?? 'off';
  if (typeof mode !== 'string' || !(DISTRIBUTED_MODES as readonly string[]).includes(mode)) {
    throw c('distributed_mode', `${JSON.stringify(mode)} is not a mode (use one of ${DISTRIBUTED_MODES.join(', ')})`);
  }
  const repl = address(cluster, 'kanidm_replication_addr', { host: listenHost, port: KANIDM_REPLICATION_DEFAULT_PORT }, c);
  return Object.freeze({
    distributed_mode: mode as DistributedMode,
    quorum_k: integer(cluster, 'quorum_k', 0, 0, c),
    quorum_timeout_ms: integer(cluster, 'quorum_timeout_ms', 500, 1, c),
    quorum_fallback: bool(cluster, 'quorum_fallback', false, c),
    kanidm_replication: bool(cluster, 'kanidm_replication', enabled, c),
    kanidm_replication_host: repl.host,
    kanidm_replication_port: repl.port,
  });
}

/**
 * Parses the cluster keys of a config table. `fail(key, problem)` makes the caller's
 * one-line "FILE: KEY: problem" error; `listenHost` is the wrapper's listener host (the
 * default bind host of the cluster listeners).
 */
export function parseClusterConfig(raw: Table, listenHost: string, fail: Fail): ClusterConfig {
  const gossipTable = section(raw, 'gossip', fail);
  const clusterTable = section(raw, 'cluster', fail);
  const g: Fail = (k, p) => fail(`[gossip].${k}`, p);
  const c: Fail = (k, p) => fail(`[cluster].${k}`, p);
  for (const k of Object.keys(gossipTable)) if (!GOSSIP_KEYS.includes(k)) throw g(k, 'unknown key');
  for (const k of Object.keys(clusterTable)) if (!CLUSTER_KEYS.includes(k)) throw c(k, 'unknown key');

  const node_id = readNodeId(raw, fail);
  const issuer_aliases = checkedList(raw, 'issuer_aliases', issuerAlias, fail);
  const gossip = readGossip(gossipTable, node_id, listenHost, g);
  const enabled = gossip.peers.length > 0;
  const cluster = readClusterMode(clusterTable, listenHost, enabled, c);
  return Object.freeze({ node_id, issuer_aliases: Object.freeze(issuer_aliases), gossip, cluster, enabled });
}
