// Kiwi ID as Kanidm's replication coordinator. Kanidm replicates identity data (persons,
// groups, credentials, OAuth2 clients) itself, between partners configured by hand in
// server.toml `[replication]` (Kanidm book, "Replication > Deployment": "In the future we will
// develop a replication coordinator ... for now you have to do it the hard way"). Here:
//
//   1. this node's `[replication]` gets `origin = "repl://<node_id>:<port>"` and `bindaddress`
//      (`[cluster] kanidm_replication_addr`), so Kanidm creates its replication identity;
//   2. `kanidmd show-replication-certificate` is read and published in this node's entry in the
//      gossiped map (authenticated, signed: the channel of gossip.ts);
//   3. every node writes one `mutual-pull` partner per other node (its origin and certificate)
//      into a block of Kanidm's config that Kiwi ID owns (in a copy of the operator's
//      server.toml: kanidm-run-config.ts), and restarts Kanidm when it changed;
//   4. a node that joined the cluster first pairs with the node it joined from (its supplier,
//      with `automatic_refresh`), waits until the supplier lists it as a partner, runs
//      `kanidmd refresh-replication-consumer` once (its database is replaced by the supplier's),
//      then pairs with everyone.
//
// Kanidm itself is never modified; only its config file and its documented admin commands.

import fs from 'node:fs';
import type { Logger } from 'pino';
import { replaceFileAtomic } from '../files/atomic-file.js';
import { KIND } from './replicated-state.js';
import type { KanidmReplicaInfo, NodeEntry } from './node-entry.js';
import type { ReplicaDb } from './replica-db.js';

export interface Partner {
  origin: string;
  certificate: string;
  automaticRefresh: boolean;
}

export const BLOCK_BEGIN = '# --- kiwi-id cluster: Kanidm replication (managed; edits here are replaced) ---';
export const BLOCK_END = '# --- end kiwi-id cluster ---';

const q = (s: string) => JSON.stringify(s);

/** The `[replication]` tables for this node and its partners (sorted: stable text, no spurious restarts). */
export function renderReplicationBlock(o: { origin: string; bindaddress: string; partners: readonly Partner[] }): string {
  const lines = [BLOCK_BEGIN, '[replication]', `origin = ${q(o.origin)}`, `bindaddress = ${q(o.bindaddress)}`];
  for (const p of [...o.partners].sort((a, b) => a.origin.localeCompare(b.origin))) {
    lines.push('', `[replication.${q(p.origin)}]`, 'type = "mutual-pull"', `partner_cert = ${q(p.certificate)}`);
    if (p.automaticRefresh) lines.push('automatic_refresh = true');
  }
  lines.push(BLOCK_END);
  return lines.join('\n') + '\n';
}

/**
 * Replaces the managed block in server.toml (appending it the first time). Refuses a file that
 * configures `[replication]` outside the block: that file is managed by hand.
 */
export function withManagedBlock(text: string, block: string): string {
  const at = blockRange(text);
  const outside = at ? text.slice(0, at.begin) + text.slice(at.end) : text;
  if (/^\s*\[replication[\].]/m.test(outside)) {
    throw new Error('server.toml configures [replication] itself; remove it (or set [cluster] kanidm_replication = false)');
  }
  if (at) return text.slice(0, at.begin) + block + text.slice(at.end).replace(/^\n/, '');
  return text.replace(/\n*$/, '\n\n') + block;
}

/** The managed block in `text` (markers included, with its line end), or null. */
export function managedBlockOf(text: string): string | null {
  const at = blockRange(text);
  return at ? text.slice(at.begin, at.end) + '\n' : null;
}

/** Where the managed block is in `text`: from its first marker to the end of its last. */
function blockRange(text: string): { begin: number; end: number } | null {
  const begin = text.indexOf(BLOCK_BEGIN);
  const end = text.indexOf(BLOCK_END);
  return begin >= 0 && end > begin ? { begin, end: end + BLOCK_END.length } : null;
}

/** The certificate from `kanidmd show-replication-certificate` output (`certificate: "MII..."`). */
export function parseReplicationCertificate(output: string): string {
  const m = /certificate\W{1,4}([A-Za-z0-9+/_-]{200,}={0,2})/.exec(output);
  if (!m) throw new Error('no replication certificate in kanidmd show-replication-certificate output');
  return m[1]!;
}

/** What the coordinator needs from the running wrapper (supervisor, kanidmd admin commands). */
export interface KanidmControl {
  showCertificate(): Promise<string>;
  refreshConsumer(): Promise<void>;
  /** Restart Kanidm (config changed) and resolve once it is healthy again. */
  restart(): Promise<void>;
}

/** Where the managed block goes (kanidm-run-config.ts); true when Kanidm's config changed. */
export interface ManagedConfig {
  compose(block: string): boolean;
}

export interface CoordinatorOptions {
  config: ManagedConfig;
  nodeId: string;
  origin: string;
  bindaddress: string;
  /** Node this one joined from, or null on the node that ran `cluster init`. */
  supplier: string | null;
  /** Exists once this node's Kanidm was refreshed from its supplier. */
  refreshedMarker: string;
  db: ReplicaDb;
  publish(kanidm: KanidmReplicaInfo): void;
  control: KanidmControl;
  log: Logger;
}

export class KanidmReplicationCoordinator {
  private chain: Promise<void> = Promise.resolve();
  private certificate = '';
  private partnersNow: string[] = [];
  private stopped = false;

  constructor(private readonly o: CoordinatorOptions) {}

  /** Enables replication, publishes the certificate, then follows node entries. */
  async start(): Promise<void> {
    await this.enqueue(async () => {
      await this.write([]);
      this.certificate = parseReplicationCertificate(await this.o.control.showCertificate());
      this.publish();
    });
    this.o.db.onChange((changes) => {
      if (changes.some((c) => c.kind === KIND.node && c.key !== this.o.nodeId)) void this.reconcile();
    });
    await this.reconcile();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Serialised: one config change / restart / refresh at a time. */
  reconcile(): Promise<void> {
    return this.enqueue(() => this.step());
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(fn).catch((e) => this.o.log.error({ err_message: (e as Error).message }, 'Kanidm replication coordination failed'));
    return this.chain;
  }

  private others(): Array<{ id: string; kanidm: KanidmReplicaInfo }> {
    return this.o.db
      .entries<NodeEntry>(KIND.node)
      .filter((e) => e.key !== this.o.nodeId && e.value.kanidm?.certificate && e.value.kanidm.origin)
      .map((e) => ({ id: e.key, kanidm: e.value.kanidm as KanidmReplicaInfo }));
  }

  private async step(): Promise<void> {
    if (this.stopped || !this.certificate) return;
    const others = this.others();
    const refreshed = this.o.supplier === null || fs.existsSync(this.o.refreshedMarker);
    if (!refreshed) {
      const sup = others.find((n) => n.id === this.o.supplier);
      if (!sup) return; // the supplier's certificate has not arrived yet
      await this.write([sup]);
      if (!sup.kanidm.partners.includes(this.o.nodeId)) return; // until the supplier pairs with us
      this.o.log.info({ supplier: sup.id }, 'refreshing Kanidm from its supplier (its database is replaced)');
      await this.o.control.refreshConsumer();
      replaceFileAtomic(this.o.refreshedMarker, `${sup.id} ${new Date().toISOString()}\n`, 0o600);
      this.o.log.info({ supplier: sup.id }, 'Kanidm refreshed from its supplier');
    }
    await this.write(others);
  }

  /** Writes the partner block; restarts Kanidm when it changed; publishes the partner list. */
  private async write(partners: Array<{ id: string; kanidm: KanidmReplicaInfo }>): Promise<void> {
    const block = renderReplicationBlock({
      origin: this.o.origin,
      bindaddress: this.o.bindaddress,
      partners: partners.map((p) => ({ origin: p.kanidm.origin, certificate: p.kanidm.certificate, automaticRefresh: p.id === this.o.supplier })),
    });
    if (this.o.config.compose(block)) {
      this.o.log.info({ partners: partners.map((p) => p.id) }, 'Kanidm replication partners changed; restarting Kanidm');
      await this.o.control.restart();
    }
    const ids = partners.map((p) => p.id).sort();
    if (this.certificate && ids.join() !== this.partnersNow.join()) {
      this.partnersNow = ids;
      this.publish();
    } else if (this.certificate && this.partnersNow.length === 0 && partners.length === 0) {
      this.publish();
    }
  }

  private publish(): void {
    this.o.publish({ origin: this.o.origin, certificate: this.certificate, partners: this.partnersNow });
  }
}
