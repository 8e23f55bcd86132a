// Static service clients across the cluster. Each node's clients file (`kiwi-id client add` on
// that node) is published into the replicated map; lookups on any node see every node's
// clients. As in the reference, a node upserts all of its file's clients with the current
// timestamp when it starts, so after a restart its file wins; a client removed from a node's
// file is removed cluster-wide (unless another node has since changed it).
import type { Logger } from 'pino';
import type { ClientRecord } from '../clients/client-record.js';
import { ClientsSource } from '../clients/clients-source.js';
import { canonical } from './crdt.js';
import { KIND } from './replicated-state.js';
import type { ReplicaDb } from './replica-db.js';

export interface ReplicatedClient {
  record: ClientRecord;
  /** Node whose clients file published it. */
  source: string;
}

export class ReplicatedClients extends ClientsSource {
  private lastList: readonly ClientRecord[] | null = null;
  private cache: ClientRecord[] | null = null;

  constructor(
    file: string,
    log: Logger,
    private readonly db: ReplicaDb,
  ) {
    super(file, log);
    db.onChange((changes) => {
      if (changes.some((c) => c.kind === KIND.client)) this.cache = null;
    });
    this.publish(true);
  }

  /** Publishes changes of this node's file (all of it at start). */
  private publish(initial = false): void {
    const list = super.all();
    if (!initial && list === this.lastList) return;
    const previous = new Map((this.lastList ?? []).map((c) => [c.client_id, c]));
    for (const c of list) {
      const old = previous.get(c.client_id);
      if (initial || !old || canonical(old) !== canonical(c)) {
        this.db.localSet(KIND.client, c.client_id, { record: c, source: this.db.node } satisfies ReplicatedClient);
      }
      previous.delete(c.client_id);
    }
    if (initial) {
      // Clients this node published earlier that are no longer in its file.
      const inFile = new Set(list.map((c) => c.client_id));
      for (const { key, value } of this.db.entries<ReplicatedClient>(KIND.client)) {
        if (value.source === this.db.node && !inFile.has(key)) this.db.localRemove(KIND.client, key);
      }
    } else {
      for (const id of previous.keys()) {
        const cur = this.db.value<ReplicatedClient>(KIND.client, id);
        if (cur?.source === this.db.node) this.db.localRemove(KIND.client, id);
      }
    }
    this.lastList = list;
  }

  override find(clientId: string): ClientRecord | undefined {
    this.publish();
    return this.db.value<ReplicatedClient>(KIND.client, clientId)?.record;
  }

  override all(): readonly ClientRecord[] {
    this.publish();
    this.cache ??= this.db.entries<ReplicatedClient>(KIND.client).map((e) => e.value.record);
    return this.cache;
  }
}
