// The pure parts of the Kanidm replication coordinator: the [replication] block it writes into
// server.toml (the format checked against kanidmd 1.11.1's server/core/src/repl/config.rs and
// its book), how the block replaces itself, and reading `show-replication-certificate` output.
// The coordination order (supplier first, refresh once, then every partner) is checked with a
// recording control; the run against real Kanidms is test/integration's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'smol-toml';
import pino from 'pino';
import {
  BLOCK_BEGIN, KanidmReplicationCoordinator, parseReplicationCertificate, renderReplicationBlock, withManagedBlock,
} from '../../wrapper/src/cluster/kanidm-replication.js';
import { KanidmRunConfig } from '../../wrapper/src/cluster/kanidm-run-config.js';
import type { KanidmReplicaInfo } from '../../wrapper/src/cluster/node-entry.js';
import { ReplicaDb } from '../../wrapper/src/cluster/replica-db.js';
import { KIND } from '../../wrapper/src/cluster/replicated-state.js';

const CERT_A = 'MIIBzTCCAXKgAwIBAgIRAWq2BcB1SUUGuumgUBpkf9IwCgYIKoZIzj0EAwIwTDEtMCsGA1UEAwwkNmFiNjA1YzAtNzU0OS00NTA2LWJhZTktYTA1MDFhNjQ3ZmQyMRswGQYDVQQKDBJLYW5pZG0gUmVwbGljYXRpb24wHhcNMjYxMTI1MjA1MTMzWhcNMzAxMTI1MjA1MTMzWjBMMS0wKwYDVQQDDCQ2YWI2MDVjMC03NTQ5LTQ1MDYtYmFlOS1hMDUwMWE2NDdmZDIxGzAZBgNVBAoMEkthbmlkbSBSZXBsaWNhdGlvbjBZ';
const CERT_B = CERT_A.replace('Aw', 'Bx');
const SERVER_TOML = 'version = "2"\nbindaddress = "127.0.0.1:8443"\ndb_path = "/var/lib/upstream/kanidm.db"\n\n[http_client_address_info]\nx-forward-for = ["127.0.0.1"]\n';

test('the block parses as Kanidm\'s [replication]: origin, bindaddress, one mutual-pull table per partner', () => {
  const block = renderReplicationBlock({
    origin: 'repl://10.10.20.10:8444',
    bindaddress: '10.10.20.10:8444',
    partners: [
      { origin: 'repl://10.10.20.12:8444', certificate: CERT_B, automaticRefresh: false },
      { origin: 'repl://10.10.20.11:8444', certificate: CERT_A, automaticRefresh: true },
    ],
  });
  const doc = JSON.parse(JSON.stringify(parse(withManagedBlock(SERVER_TOML, block)))) as any;
  assert.equal(doc.version, '2');
  assert.deepEqual(doc.http_client_address_info, { 'x-forward-for': ['127.0.0.1'] });
  assert.equal(doc.replication.origin, 'repl://10.10.20.10:8444');
  assert.equal(doc.replication.bindaddress, '10.10.20.10:8444');
  assert.deepEqual(doc.replication['repl://10.10.20.11:8444'], { type: 'mutual-pull', partner_cert: CERT_A, automatic_refresh: true });
  assert.deepEqual(doc.replication['repl://10.10.20.12:8444'], { type: 'mutual-pull', partner_cert: CERT_B });
  // Stable text whatever order partners come in (no restart for a reordering).
  assert.equal(block, renderReplicationBlock({ origin: 'repl://10.10.20.10:8444', bindaddress: '10.10.20.10:8444', partners: [
    { origin: 'repl://10.10.20.11:8444', certificate: CERT_A, automaticRefresh: true },
    { origin: 'repl://10.10.20.12:8444', certificate: CERT_B, automaticRefresh: false },
  ] }));
});

test('the managed block replaces itself and nothing else; a hand-written [replication] is refused', () => {
  const one = withManagedBlock(SERVER_TOML, renderReplicationBlock({ origin: 'repl://a:1', bindaddress: '127.0.0.1:1', partners: [] }));
  const two = withManagedBlock(one, renderReplicationBlock({ origin: 'repl://a:2', bindaddress: '127.0.0.1:2', partners: [] }));
  assert.equal(two.split(BLOCK_BEGIN).length, 2, 'one block');
  assert.ok(two.startsWith(SERVER_TOML));
  assert.equal((parse(two) as any).replication.origin, 'repl://a:2');
  assert.throws(() => withManagedBlock(SERVER_TOML + '\n[replication]\norigin = "repl://x:1"\n', 'x'), /configures \[replication\] itself/);
});

test('the certificate is read from kanidmd show-replication-certificate output', () => {
  const out = [
    '00000000-0000-0000-0000-000000000000 WARN     🚧 [warn]: WARNING: /etc/server.toml has \'everyone\' permission bits in the mode.',
    '00000000-0000-0000-0000-000000000000 INFO     ｉ [info]: Running show replication certificate ...',
    `00000000-0000-0000-0000-000000000000 INFO     ｉ [info]:  | certificate: "${CERT_A}"`,
  ].join('\n');
  assert.equal(parseReplicationCertificate(out), CERT_A);
  assert.throws(() => parseReplicationCertificate('Unable to connect to socket path'), /no replication certificate/);
});

test('a joining node pairs with its supplier first, refreshes once when the supplier pairs back, then pairs with everyone', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-krepl-'));
  try {
    const base = path.join(dir, 'server.toml');
    fs.writeFileSync(base, SERVER_TOML, { mode: 0o440 });
    const config = new KanidmRunConfig(base, path.join(dir, 'run', 'kanidm-server.toml'));
    const serverToml = config.path;
    const db = new ReplicaDb({ dir, node: 'n3' });
    const calls: string[] = [];
    const published: KanidmReplicaInfo[] = [];
    const entry = (id: string, kanidm: KanidmReplicaInfo) => ({ node_id: id, gossip_url: `https://${id}:1`, issuer: 'https://id', mode: 'eventual', started_at: 1, kanidm });
    const c = new KanidmReplicationCoordinator({
      config,
      nodeId: 'n3',
      origin: 'repl://n3:8444',
      bindaddress: '127.0.0.1:8444',
      supplier: 'n1',
      refreshedMarker: path.join(dir, 'refreshed'),
      db,
      publish: (k) => {
        published.push(k);
        db.localSet(KIND.node, 'n3', entry('n3', k));
      },
      control: {
        showCertificate: async () => (calls.push('show'), `certificate: "${CERT_B}"`),
        refreshConsumer: async () => void calls.push('refresh'),
        restart: async () => void calls.push('restart:' + Object.keys((parse(fs.readFileSync(serverToml, 'utf8')) as any).replication).filter((k) => k.startsWith('repl://')).sort().join(',')),
      },
      log: pino({ level: 'silent' }),
    });
    await c.start();
    assert.deepEqual(calls, ['restart:', 'show'], 'replication enabled, then the certificate read');
    assert.equal(published.at(-1)!.certificate, CERT_B);
    // Node 2's certificate arrives first: not a partner before the supplier has refreshed us.
    db.localSet(KIND.node, 'n2', entry('n2', { origin: 'repl://n2:8444', certificate: CERT_A, partners: [] }));
    await c.reconcile();
    assert.deepEqual(calls, ['restart:', 'show']);
    // The supplier appears: paired with it alone; no refresh until it pairs back.
    db.localSet(KIND.node, 'n1', entry('n1', { origin: 'repl://n1:8444', certificate: CERT_A, partners: [] }));
    await c.reconcile();
    assert.deepEqual(calls.slice(2), ['restart:repl://n1:8444']);
    assert.deepEqual(published.at(-1)!.partners, ['n1']);
    db.localSet(KIND.node, 'n1', entry('n1', { origin: 'repl://n1:8444', certificate: CERT_A, partners: ['n3'] }));
    await c.reconcile();
    assert.deepEqual(calls.slice(3), ['refresh', 'restart:repl://n1:8444,repl://n2:8444']);
    assert.ok((parse(fs.readFileSync(serverToml, 'utf8')) as any).replication['repl://n1:8444'].automatic_refresh);
    // Nothing changes: no restart, no second refresh.
    await c.reconcile();
    assert.equal(calls.length, 5);
    assert.equal(fs.readFileSync(base, 'utf8'), SERVER_TOML, "the operator's file is never written");
    c.stop();
    db.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("Kanidm's run config: the operator's file (read-only) plus the managed block, composed again before each start", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-krun-'));
  try {
    const etc = path.join(dir, 'etc');
    fs.mkdirSync(etc);
    const base = path.join(etc, 'server.toml');
    fs.writeFileSync(base, SERVER_TOML, { mode: 0o444 });
    fs.chmodSync(etc, 0o555); // as in the appliance, where the service user cannot write there
    const run = new KanidmRunConfig(base, path.join(dir, 'cluster', 'kanidm-server.toml'));
    assert.equal(run.compose(), true, 'first start: the copy is written');
    assert.equal(fs.readFileSync(run.path, 'utf8'), SERVER_TOML, 'no block yet: the operator\'s file as is');
    assert.equal(fs.statSync(run.path).mode & 0o777, 0o400, 'read-only for Kanidm, which checks that');
    assert.equal(run.compose(), false, 'nothing changed: nothing written');

    const block = renderReplicationBlock({ origin: 'repl://a:1', bindaddress: '127.0.0.1:1', partners: [{ origin: 'repl://b:1', certificate: CERT_A, automaticRefresh: false }] });
    assert.equal(run.compose(block), true);
    assert.equal(run.compose(block), false);
    assert.deepEqual(Object.keys((parse(fs.readFileSync(run.path, 'utf8')) as any).replication).sort(), ['bindaddress', 'origin', 'repl://b:1']);

    // The operator fixes a value: the next start (compose() without a block) keeps the partners.
    fs.chmodSync(etc, 0o755);
    fs.chmodSync(base, 0o644);
    fs.writeFileSync(base, SERVER_TOML.replace('127.0.0.1:8443', '127.0.0.1:9443'));
    assert.equal(run.compose(), true);
    const doc = parse(fs.readFileSync(run.path, 'utf8')) as any;
    assert.equal(doc.bindaddress, '127.0.0.1:9443');
    assert.equal(doc.replication['repl://b:1'].type, 'mutual-pull');

    // A [replication] the operator wrote by hand is refused, the file named.
    fs.writeFileSync(base, SERVER_TOML + '\n[replication]\norigin = "repl://x:1"\n');
    assert.throws(() => run.compose(), (e: Error) => e.message.startsWith(`${base}: `) && /configures \[replication\] itself/.test(e.message));
  } finally {
    fs.chmodSync(path.join(dir, 'etc'), 0o755);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a server.toml an older Kiwi ID wrote its block into: the copy takes the block over', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-krun-'));
  try {
    const block = renderReplicationBlock({ origin: 'repl://a:1', bindaddress: '127.0.0.1:1', partners: [] });
    const base = path.join(dir, 'server.toml');
    fs.writeFileSync(base, withManagedBlock(SERVER_TOML, block));
    const run = new KanidmRunConfig(base, path.join(dir, 'kanidm-server.toml'));
    run.compose();
    assert.equal((parse(fs.readFileSync(run.path, 'utf8')) as any).replication.origin, 'repl://a:1');
    assert.equal(fs.readFileSync(run.path, 'utf8').split(BLOCK_BEGIN).length, 2, 'one block');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
