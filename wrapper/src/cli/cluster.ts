// `kiwi-id cluster init|token|join|status`: make a node a member of a Kiwi ID cluster.
//   init              on the first node: cluster CA and this node's certificate
//   token NODE_ID     on that node: a one-time join token for NODE_ID (its wrapper must be running)
//   join TOKEN        on a new node: fetch its certificate from the first node with the token
//   status [--json]   nodes, last contact, lag, mode
// Exit codes: 0 ok, 1 operation failed, 2 bad input or config.
import { Command } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { ownerForRootWrite, replaceFileAtomic } from '../files/atomic-file.js';
import { adminPasswordFile, type KiwiConfig, type ValidateOptions } from '../config/config.js';
import { clusterPaths, createClusterCa, createJoinToken, decodeJoinToken, issueNodeCertificate, newNodeKey, writeNodeIdentity } from '../cluster/pki.js';
import { formatStatus, readStatus } from '../cluster/status.js';
import { requestJoin } from '../cluster/transport.js';
import { SUPPLIER_FILE } from '../cluster/index.js';
import { parseDuration } from '../config/duration.js';

function fail(code: number, message: string): never {
  process.stderr.write(`kiwi-id: cluster: ${message}\n`);
  process.exit(code);
}

/**
 * Run as root (an operator inside the appliance), what these commands write under `data_dir`
 * (the cluster directory, cookie keys, Kanidm client secret) goes to the owner of `data_dir`:
 * the service user whose wrapper reads it, as the clients file does. Elsewhere (the recovered
 * admin passwords next to the config) files stay root's.
 */
function handOver(cfg: KiwiConfig, files: string[] = []): void {
  if (!fs.existsSync(cfg.data_dir)) return;
  const owner = ownerForRootWrite(cfg.data_dir);
  if (!owner) return;
  const dir = clusterPaths(cfg.data_dir).dir;
  const inCluster = fs.existsSync(dir) ? [dir, ...fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(dir, f))] : [];
  const underData = (f: string) => !path.relative(cfg.data_dir, f).startsWith('..');
  for (const f of [...inCluster, ...files]) {
    if (underData(f) && fs.existsSync(f)) fs.chownSync(f, owner.uid, owner.gid);
  }
}

export function registerClusterCommands(program: Command, loadConfig: (opts?: ValidateOptions) => KiwiConfig): void {
  const cluster = program.command('cluster').description('several Kiwi ID nodes as one identity provider');

  cluster
    .command('init')
    .description('first node: create the cluster CA and this node\'s certificate (never overwrites)')
    .action(() => {
      const cfg = loadConfig({ checkFiles: false });
      const p = clusterPaths(cfg.data_dir);
      const id = cfg.cluster.node_id;
      if (fs.existsSync(p.nodeCert)) {
        process.stdout.write(`exists  cluster identity of node ${id}: ${p.nodeCert}\n`);
        return;
      }
      const created = createClusterCa(p, id);
      if (!created && !fs.existsSync(p.caKey)) fail(1, `${p.caCert} exists without its key: this node joined a cluster; use \`kiwi-id cluster join\``);
      const k = newNodeKey();
      const caPem = fs.readFileSync(p.caCert, 'utf8');
      writeNodeIdentity(p, k.privatePem, issueNodeCertificate(fs.readFileSync(p.caKey, 'utf8'), caPem, id, k.publicPem), caPem);
      handOver(cfg);
      process.stdout.write(`created cluster CA: ${p.caCert}\ncreated node ${id}: ${p.nodeCert}\n`);
      if (!cfg.cluster.gossip.allowed_node_ids.includes(id)) {
        process.stdout.write(`note: ${id} is not in [gossip] allowed_node_ids; list every node there (empty = nobody may gossip)\n`);
      }
      process.stdout.write('next: start this node (`kiwi-id run`), then `kiwi-id cluster token NODE_ID` for each new node\n');
    });

  cluster
    .command('token')
    .description('on the CA node: print a one-time join token for NODE_ID')
    .argument('<node_id>')
    .option('--ttl <duration>', 'validity', '1h')
    .action((nodeId: string, opts: { ttl: string }) => {
      const cfg = loadConfig({ checkFiles: false });
      const id = nodeId.toLowerCase();
      if (!cfg.cluster.gossip.allowed_node_ids.includes(id)) {
        fail(2, `${id} is not in [gossip] allowed_node_ids of ${cfg.config_file}; add it first (the join would be refused)`);
      }
      let ttlMs: number;
      try {
        ttlMs = parseDuration(opts.ttl);
      } catch (e) {
        fail(2, `--ttl: ${(e as Error).message}`);
      }
      const url = `https://${cfg.cluster.node_id}:${cfg.cluster.gossip.listen_port}`;
      try {
        const token = createJoinToken(clusterPaths(cfg.data_dir), url, id, ttlMs);
        handOver(cfg); // the running wrapper reads the token file
        process.stdout.write(token + '\n');
      } catch (e) {
        fail(1, (e as Error).message);
      }
    });

  cluster
    .command('join')
    .description('on a new node: join the cluster with a token from `kiwi-id cluster token`')
    .argument('<token>')
    .action(async (tokenText: string) => {
      const cfg = loadConfig({ checkFiles: false });
      const p = clusterPaths(cfg.data_dir);
      let token;
      try {
        token = decodeJoinToken(tokenText.trim());
      } catch (e) {
        fail(2, (e as Error).message);
      }
      const id = cfg.cluster.node_id;
      if (token.nodeId !== id) fail(2, `the token is for node ${token.nodeId}, but node_id of this node is ${id} (${cfg.config_file})`);
      if (fs.existsSync(p.nodeCert)) fail(1, `${p.nodeCert} exists: this node is already a member`);
      const k = newNodeKey();
      try {
        const r = await requestJoin(token.url, token.caDer, { node_id: id, public_key: k.publicPem, secret: token.secret });
        writeNodeIdentity(p, k.privatePem, r.certificate, r.ca);
        // Kanidm replication refreshes this node's Kanidm from the node it joined from.
        replaceFileAtomic(path.join(p.dir, SUPPLIER_FILE), new URL(token.url).hostname + '\n', 0o600);
        // Shared secrets: session cookies verify on every node; with Kanidm replication this
        // node's Kanidm becomes a copy of the first node's, including Kiwi ID's OAuth2 client.
        if (r.cookie_keys) replaceFileAtomic(path.join(cfg.data_dir, 'cookie-keys'), r.cookie_keys + '\n', 0o600);
        if (cfg.cluster.cluster.kanidm_replication) {
          if (r.upstream_oauth2_secret) {
            fs.mkdirSync(path.dirname(cfg.upstream_oauth2.client_secret_file), { recursive: true });
            replaceFileAtomic(cfg.upstream_oauth2.client_secret_file, r.upstream_oauth2_secret + '\n', 0o600);
          }
          for (const account of ['idm_admin', 'admin'] as const) {
            const pw = r.admin_passwords?.[account];
            if (pw) replaceFileAtomic(adminPasswordFile(cfg, account), pw + '\n', 0o600);
          }
        }
        handOver(cfg, [path.join(cfg.data_dir, 'cookie-keys'), cfg.upstream_oauth2.client_secret_file]);
      } catch (e) {
        fail(1, (e as Error).message);
      }
      process.stdout.write(`joined: node ${id} certificate in ${p.nodeCert}; start it with \`kiwi-id run\`\n`);
    });

  cluster
    .command('status')
    .description('nodes, last contact, lag and mode (JSON with --json)')
    .option('--json', 'machine-readable')
    .action((opts: { json?: boolean }) => {
      const cfg = loadConfig({ checkFiles: false });
      const s = readStatus(cfg);
      process.stdout.write(opts.json ? JSON.stringify(s) + '\n' : formatStatus(s));
    });
}
