// node_id, issuer_aliases, [gossip], [cluster]: defaults and one-line errors naming file and key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../wrapper/src/config/config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cluster-config-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
function load(extra: string) {
  const file = path.join(dir, `c${n++}.toml`);
  fs.writeFileSync(file, `listen_addr = "10.10.20.10:8443"\ntls_cert = "x"\ntls_key = "y"\n${extra}\n`);
  return { file, cfg: () => loadConfig(file, { checkFiles: false }) };
}

test('without [gossip] peers a node runs alone, mode off, with the reference defaults', () => {
  const c = load('node_id = "kiwi-1"').cfg().cluster;
  assert.equal(c.enabled, false);
  assert.equal(c.node_id, 'kiwi-1');
  assert.deepEqual(c.gossip.allowed_node_ids, [], 'empty: nobody may gossip (fail closed)');
  assert.equal(c.gossip.interval_secs, 5);
  assert.equal(c.gossip.tombstone_ttl_secs, 604800);
  assert.equal(c.gossip.listen_host, '10.10.20.10');
  assert.equal(c.gossip.listen_port, 8445);
  assert.deepEqual({ ...c.cluster }, { distributed_mode: 'off', quorum_k: 0, quorum_timeout_ms: 500, quorum_fallback: false, kanidm_replication: false, kanidm_replication_host: '10.10.20.10', kanidm_replication_port: 8444 });
});

test('node_id defaults to $HOSTNAME', () => {
  const saved = process.env.HOSTNAME;
  process.env.HOSTNAME = 'kiwi-from-env';
  try {
    assert.equal(load('').cfg().cluster.node_id, 'kiwi-from-env');
  } finally {
    if (saved === undefined) delete process.env.HOSTNAME;
    else process.env.HOSTNAME = saved;
  }
});

test('one peers list for every node: the entry whose host is node_id is this node', () => {
  const c = load('node_id = "10.10.20.11"\n[gossip]\npeers = ["https://10.10.20.10:9000", "https://10.10.20.11:9001", "https://10.10.20.12:9000"]\nallowed_node_ids = ["10.10.20.10"]').cfg().cluster;
  assert.deepEqual(c.gossip.peers, ['https://10.10.20.10:9000', 'https://10.10.20.12:9000']);
  assert.equal(c.gossip.listen_port, 9001);
  assert.equal(c.enabled, true);
  assert.equal(c.cluster.kanidm_replication, true, 'on by default in a cluster');
  // "ipa1" does not match "ipa10": exact host comparison.
  const d = load('node_id = "ipa1"\n[gossip]\npeers = ["https://ipa10:8445"]').cfg().cluster;
  assert.deepEqual(d.gossip.peers, ['https://ipa10:8445']);
});

for (const [extra, key, detail] of [
  ['node_id = "bad_host!"', 'node_id', /not a hostname/],
  ['node_id = 5', 'node_id', /expected a non-empty string/],
  ['issuer_aliases = ["http://x"]', 'issuer_aliases', /https/],
  ['[gossip]\npeers = "https://a:1"', '[gossip].peers', /list of non-empty strings/],
  ['[gossip]\npeers = ["ftp://a:1"]', '[gossip].peers', /https/],
  ['[gossip]\ninterval_secs = 0', '[gossip].interval_secs', /integer >= 1/],
  ['[gossip]\ninterval_secs = 10\ntombstone_ttl_secs = 10', '[gossip].tombstone_ttl_secs', /greater than interval_secs/],
  ['[gossip]\nallowed_node_ids = ["a b"]', '[gossip].allowed_node_ids', /not a hostname/],
  ['[gossip]\nlisten_addr = "nope"', '[gossip].listen_addr', /host:port/],
  ['[gossip]\nfanout = 3', '[gossip].fanout', /unknown key/],
  ['[cluster]\ndistributed_mode = "quorum"', '[cluster].distributed_mode', /off, eventual, forwarding, strict/],
  ['[cluster]\nquorum_k = -1', '[cluster].quorum_k', /integer >= 0/],
  ['[cluster]\nquorum_fallback = "yes"', '[cluster].quorum_fallback', /true or false/],
  ['[cluster]\nkanidm_replication_addr = 8444', '[cluster].kanidm_replication_addr', /host:port/],
] as const) {
  test(`bad ${key} names file and key: ${extra.replace(/\n/g, ' ')}`, () => {
    const { file, cfg } = load(extra);
    assert.throws(cfg, (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.key, key);
      assert.ok(e.message.startsWith(`${file}: ${key}: `), e.message);
      assert.match(e.message, detail);
      return true;
    });
  });
}
