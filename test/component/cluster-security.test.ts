// What the gossip channel refuses: an unlisted node, a tampered envelope, an envelope older than
// tombstone_ttl_secs, a client without a cluster certificate, a node entry for an unlisted node.
// None of them changes anything; each is counted in kiwi_gossip_rejected_envelopes_total.
// A replayed recent envelope is accepted but cannot undo a later delete (idempotent merge).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { ClusterHarness } from './harness/cluster.js';
import { Sealer } from '../../wrapper/src/cluster/envelope.js';
import { clusterPaths, createClusterCa, issueNodeCertificate, loadNodeIdentity, newNodeKey, writeNodeIdentity, type NodeIdentity } from '../../wrapper/src/cluster/pki.js';
import { encodeHlc } from '../../wrapper/src/cluster/hlc.js';
import { PATHS } from '../../wrapper/src/cluster/transport.js';
import { KIND } from '../../wrapper/src/cluster/replicated-state.js';

const TTL_S = 600;
const h = new ClusterHarness({ nodes: 2, mode: 'eventual', intervalSecs: 1, tombstoneTtlSecs: TTL_S });
const n1 = () => h.nodes[0]!;
let legit: NodeIdentity;
let unlisted: NodeIdentity;
let foreign: NodeIdentity;

before(async () => {
  await h.start();
  legit = loadNodeIdentity(clusterPaths(h.nodes[1]!.dataDir), h.nodes[1]!.nodeId);
  // A node with a certificate from the real cluster CA, but not in allowed_node_ids.
  const ca = clusterPaths(n1().dataDir);
  const k = newNodeKey();
  const outsider = `${h.net}.99`;
  const dir = path.join(h.root, 'outsider');
  writeNodeIdentity(clusterPaths(dir), k.privatePem, issueNodeCertificate(fs.readFileSync(ca.caKey, 'utf8'), fs.readFileSync(ca.caCert, 'utf8'), outsider, k.publicPem), fs.readFileSync(ca.caCert, 'utf8'));
  unlisted = loadNodeIdentity(clusterPaths(dir), outsider);
  // A "node 2" certified by another CA.
  const other = clusterPaths(path.join(h.root, 'other-ca'));
  createClusterCa(other, 'other');
  const k2 = newNodeKey();
  writeNodeIdentity(other, k2.privatePem, issueNodeCertificate(fs.readFileSync(other.caKey, 'utf8'), fs.readFileSync(other.caCert, 'utf8'), h.nodes[1]!.nodeId, k2.publicPem), fs.readFileSync(other.caCert, 'utf8'));
  foreign = loadNodeIdentity(other, h.nodes[1]!.nodeId);
});
after(() => h.close());

const clientItem = (id: string, writer: string, wall = Date.now()) => ({
  kind: KIND.client,
  key: id,
  state: { w: { [writer]: { t: encodeHlc({ wall, counter: 0, node: writer }), v: { record: { client_id: id, redirect_uris: [], post_logout_redirect_uris: [], grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', client_secret_hash: 'sha256$' + 'A'.repeat(43), scopes: ['groups'] }, source: writer } } }, r: {}, d: null },
});

const gossipBody = (items: unknown[]) => ({ epoch: 'attacker', push: { from: 0, items, upto: 1, more: false }, pull: { epoch: null, since: 0 } });

/** POSTs raw JSON to node 1's gossip path with TLS client identity `as` (trusting the real CA). */
async function post(as: NodeIdentity | null, body: unknown) {
  const agent = new Agent({ connect: { ca: fs.readFileSync(clusterPaths(n1().dataDir).caCert, 'utf8'), ...(as ? { cert: as.certPem, key: as.keyPem } : {}) } });
  try {
    const res = await request(`https://${n1().ip}:${n1().gossipPort}${PATHS.gossip}`, { method: 'POST', dispatcher: agent, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: res.statusCode, json: JSON.parse(await res.body.text()) };
  } finally {
    await agent.close();
  }
}

async function rejected(reason: string): Promise<number> {
  const text = await n1().metrics.registry.metrics();
  const m = new RegExp(`kiwi_gossip_rejected_envelopes_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

test('a legitimate node\'s envelope is merged (the baseline the refusals below differ from)', async () => {
  const env = await new Sealer(legit).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-ok', legit.nodeId)]));
  const r = await post(legit, env);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(n1().cluster.clients.find('svc-ok'));
});

test('an unlisted node (valid cluster certificate) is refused before merge', async () => {
  const before = await rejected('unlisted_node');
  const env = await new Sealer(unlisted).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-evil', unlisted.nodeId)]));
  const r = await post(unlisted, env);
  assert.equal(r.status, 403);
  assert.equal(r.json.reason, 'unlisted_node');
  assert.equal(n1().cluster.clients.find('svc-evil'), undefined);
  assert.equal(await rejected('unlisted_node'), before + 1);
});

test('a tampered envelope (payload changed after signing) is refused', async () => {
  const env = await new Sealer(legit).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-a', legit.nodeId)]));
  const payload = JSON.parse(Buffer.from(env.payload, 'base64url').toString('utf8'));
  payload.body.push.items[0] = clientItem('svc-tampered', legit.nodeId);
  const tampered = { ...env, payload: Buffer.from(JSON.stringify(payload)).toString('base64url') };
  const before = await rejected('bad_signature');
  const r = await post(legit, tampered);
  assert.equal(r.status, 403);
  assert.equal(r.json.reason, 'bad_signature');
  assert.equal(n1().cluster.clients.find('svc-tampered'), undefined);
  assert.equal(n1().cluster.clients.find('svc-a'), undefined);
  assert.equal(await rejected('bad_signature'), before + 1);
});

test('an envelope older than tombstone_ttl_secs is refused; a recent replay cannot undo a delete', async () => {
  const old = await new Sealer(legit).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-old', legit.nodeId, Date.now() - (TTL_S + 60) * 1000)]), Date.now() - (TTL_S + 60) * 1000);
  const before = await rejected('too_old');
  const r = await post(legit, old);
  assert.equal(r.status, 403);
  assert.equal(r.json.reason, 'too_old');
  assert.equal(n1().cluster.clients.find('svc-old'), undefined);
  assert.equal(await rejected('too_old'), before + 1);

  // Within the TTL: the same envelope twice, with a delete in between.
  const env = await new Sealer(legit).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-replay', legit.nodeId)]));
  assert.equal((await post(legit, env)).status, 200);
  assert.ok(n1().cluster.clients.find('svc-replay'));
  n1().cluster.db.localRemove(KIND.client, 'svc-replay');
  assert.equal((await post(legit, env)).status, 200);
  assert.equal(n1().cluster.clients.find('svc-replay'), undefined, 'the delete observed that write; replaying it changes nothing');
});

test('without a cluster certificate, or with one from another CA, nothing is accepted', async () => {
  const env = await new Sealer(legit).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-nocert', legit.nodeId)]));
  const none = await post(null, env);
  assert.equal(none.status, 401);
  const other = await post(foreign, await new Sealer(foreign).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-foreign', foreign.nodeId)])));
  assert.equal(other.status, 401);
  // A valid TLS identity does not let another node's (foreign) signature through either.
  const mixed = await post(legit, await new Sealer(foreign).seal(PATHS.gossip, n1().nodeId, gossipBody([clientItem('svc-foreign', foreign.nodeId)])));
  assert.equal(mixed.status, 403);
  assert.equal(mixed.json.reason, 'bad_certificate');
  assert.equal(n1().cluster.clients.find('svc-nocert'), undefined);
  assert.equal(n1().cluster.clients.find('svc-foreign'), undefined);
  assert.ok((await rejected('no_client_certificate')) >= 2);
});

test('a node entry for an unlisted node, relayed by a listed one, is dropped before merge', async () => {
  const ghost = `${h.net}.77`;
  const item = { kind: KIND.node, key: ghost, state: { w: { [legit.nodeId]: { t: encodeHlc({ wall: Date.now(), counter: 0, node: legit.nodeId }), v: { node_id: ghost, gossip_url: `https://${ghost}:1`, issuer: h.issuer, mode: 'eventual', started_at: Date.now() } } }, r: {}, d: null } };
  const before = await rejected('unlisted_node_entry');
  const r = await post(legit, await new Sealer(legit).seal(PATHS.gossip, n1().nodeId, gossipBody([item])));
  assert.equal(r.status, 200);
  assert.equal(n1().cluster.db.value(KIND.node, ghost), undefined);
  assert.ok(!n1().cluster.status().nodes.some((n) => n.node_id === ghost));
  assert.equal(await rejected('unlisted_node_entry'), before + 1);
});

test('an envelope addressed to another node or of another type is refused', async () => {
  const toOther = await new Sealer(legit).seal(PATHS.gossip, h.nodes[1]!.nodeId, gossipBody([]));
  const r1 = await post(legit, toOther);
  assert.equal(r1.json.reason, 'wrong_recipient');
  const wrongType = await new Sealer(legit).seal(PATHS.consume, n1().nodeId, gossipBody([]));
  const r2 = await post(legit, wrongType);
  assert.equal(r2.json.reason, 'wrong_type');
});
