// The server.toml Kanidm runs with when Kiwi ID coordinates its replication.
//
// The operator's server.toml (`upstream_config`) stays as written: the appliance keeps it
// root-owned and read-only for the service user (ProtectSystem=strict), and Kanidm itself warns
// when its config is writable by the user it runs as. The `[replication]` block Kiwi ID manages
// changes while the node runs (partners come and go), so it cannot live there. Kanidm runs
// instead with a copy in the node's cluster directory (writable, 0700): the operator's file plus
// the managed block. The copy is composed again before every start of kanidmd, so an edit of the
// operator's file (e.g. fixing a bad value) takes effect at Kanidm's next restart, as it does
// without a cluster.
import fs from 'node:fs';
import path from 'node:path';
import { replaceFileAtomic } from '../files/atomic-file.js';
import type { KiwiConfig } from '../config/config.js';
import { managedBlockOf, withManagedBlock } from './kanidm-replication.js';
import { clusterPaths } from './pki.js';

const RUN_CONFIG_FILE = 'kanidm-server.toml';

export class KanidmRunConfig {
  /** This node's run config when Kiwi ID coordinates Kanidm's replication; null otherwise. */
  static forNode(cfg: Pick<KiwiConfig, 'cluster' | 'data_dir' | 'upstream_config'>): KanidmRunConfig | null {
    if (!cfg.cluster.enabled || !cfg.cluster.cluster.kanidm_replication) return null;
    return new KanidmRunConfig(cfg.upstream_config, path.join(clusterPaths(cfg.data_dir).dir, RUN_CONFIG_FILE));
  }

  /**
   * @param base the operator's server.toml (only read)
   * @param path the composed copy Kanidm is started with
   */
  constructor(
    readonly base: string,
    readonly path: string,
  ) {}

  /**
   * Writes base + `block` (default: the block Kanidm runs with now) when that differs from
   * the copy; resolves whether it did. A base that configures `[replication]` itself is refused
   * with its path named (withManagedBlock).
   */
  compose(block?: string): boolean {
    let baseText: string;
    try {
      baseText = fs.readFileSync(this.base, 'utf8');
    } catch (err) {
      throw new Error(`${this.base}: cannot read Kanidm's server.toml: ${(err as Error).message}`);
    }
    const current = this.read();
    // A base written in place by an older Kiwi ID may still hold a block: the newest one wins.
    const use = block ?? managedBlockOf(current ?? '') ?? managedBlockOf(baseText);
    let next: string;
    try {
      next = use ? withManagedBlock(baseText, use) : baseText;
    } catch (err) {
      throw new Error(`${this.base}: ${(err as Error).message}`);
    }
    if (next === current) return false;
    fs.mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o700 });
    // Read-only for its owner: Kanidm checks that its config is not writable by it.
    replaceFileAtomic(this.path, next, 0o400);
    return true;
  }

  private read(): string | null {
    try {
      return fs.readFileSync(this.path, 'utf8');
    } catch {
      return null;
    }
  }
}
