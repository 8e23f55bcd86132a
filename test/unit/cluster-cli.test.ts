// `kiwi-id cluster init|token` as an operator runs them inside the appliance: as root, on a node
// whose data_dir belongs to the service user. What they write there must go to that user, or the
// running wrapper (not root) could not read its cluster identity or the join tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const cli = path.resolve('wrapper/src/cli/main.ts');
const root = process.getuid?.() === 0;
// As root: a service user that is not root; otherwise the files simply stay the caller's.
const SERVICE = root ? { uid: 4242, gid: 4242 } : { uid: process.getuid!(), gid: process.getgid!() };
let dir: string;

function kiwi(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, '-c', path.join(dir, 'config.toml'), ...args], { encoding: 'utf8' });
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cluster-cli-'));
  fs.writeFileSync(
    path.join(dir, 'config.toml'),
    [
      'listen_addr = "127.0.0.1:9443"',
      'tls_cert = "tls.crt"',
      'tls_key = "tls.key"',
      'jwt_private_key = "jwt-private.pem"',
      'jwt_public_key = "jwt-public.pem"',
      'data_dir = "data"',
      'node_id = "10.10.20.10"',
      '[gossip]',
      'peers = ["https://10.10.20.10:9444", "https://10.10.20.11:9444"]',
      'allowed_node_ids = ["10.10.20.10", "10.10.20.11"]',
      '[cluster]',
      'distributed_mode = "eventual"',
      'kanidm_replication = false',
    ].join('\n'),
  );
  fs.mkdirSync(path.join(dir, 'data'), { mode: 0o700 });
  fs.chownSync(path.join(dir, 'data'), SERVICE.uid, SERVICE.gid);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('cluster init and token run as root hand what they write under data_dir to its owner', () => {
  const init = kiwi('cluster', 'init');
  assert.equal(init.status, 0, init.stderr);
  const token = kiwi('cluster', 'token', '10.10.20.11');
  assert.equal(token.status, 0, token.stderr);
  assert.ok(token.stdout.trim().length > 40, token.stdout);
  const clusterDir = path.join(dir, 'data', 'cluster');
  const written = [clusterDir, ...fs.readdirSync(clusterDir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(clusterDir, f))];
  assert.ok(written.some((f) => f.includes('join-tokens') && fs.statSync(f).isFile()), `a join token file: ${written.join(', ')}`);
  for (const f of written) {
    const st = fs.statSync(f);
    assert.deepEqual({ f, uid: st.uid, gid: st.gid }, { f, ...SERVICE });
    if (/\.key$|join-tokens\//.test(f)) assert.equal(st.mode & 0o077, 0, `${f} is owner-only`);
  }
});
