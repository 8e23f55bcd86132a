// Three whole `kiwi-id run` processes on loopback addresses 127.R.S.10/.11/.12 become one cluster
// with the commands an operator types (`cluster init`, `cluster token`, `cluster join`), then:
// a node killed with `kill -9` and restarted catches up with nothing lost; a partitioned node
// (iptables on loopback) converges after the partition heals. The upstream of each wrapper is
// the scripted child of the supervisor tests; Kanidm's own replication is test/integration's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WrapperProcess } from './harness/wrapper-process.js';
import { until } from './harness/cluster.js';
import { killStrays } from '../integration/harness/kiwi-node.js';

const CMD = [process.execPath, '--import', 'tsx', path.resolve('wrapper/src/cli/main.ts')];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-cluster-proc-'));
const subnet = `127.${randomInt(1, 250)}.${randomInt(1, 250)}`;
const ips = [10, 11, 12].map((x) => `${subnet}.${x}`);
const hasIptables = process.getuid?.() === 0 && spawnSync('iptables', ['-S', 'OUTPUT']).status === 0;
const rules: string[][] = [];
const nodes: WrapperProcess[] = [];
let listenPorts: number[] = [];
let gossipPorts: number[] = [];

async function freePortOn(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function clusterConfig(i: number): string[] {
  return [
    `node_id = "${ips[i]}"`,
    '[gossip]',
    `peers = [${ips.map((ip, j) => `"https://${ip}:${gossipPorts[j]}"`).join(', ')}]`,
    'interval_secs = 1',
    `allowed_node_ids = [${ips.map((ip) => `"${ip}"`).join(', ')}]`,
    `listen_addr = "${ips[i]}:${gossipPorts[i]}"`,
    '[cluster]',
    'distributed_mode = "eventual"',
    'kanidm_replication = false',
  ];
}

function node(i: number, beforeRun?: (w: WrapperProcess) => void): WrapperProcess {
  const dir = path.join(root, `node${i + 1}`);
  fs.mkdirSync(dir, { recursive: true });
  const w = new WrapperProcess(dir, CMD, process.env, { listenHost: ips[i], listenPort: listenPorts[i], extraConfig: clusterConfig(i), beforeRun });
  nodes[i] = w;
  return w;
}

function ok(r: ReturnType<WrapperProcess['cli']>, what: string): string {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  return r.stdout;
}

const secrets: Record<string, string> = {};
async function tokenStatus(w: WrapperProcess, id: string): Promise<number> {
  const r = await w.get('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${id}:${secrets[id]}`).toString('base64') },
    body: 'grant_type=client_credentials',
  });
  return r.status;
}

function status(w: WrapperProcess) {
  return JSON.parse(ok(w.cli('cluster', 'status', '--json'), 'cluster status'));
}

before(async () => {
  listenPorts = await Promise.all(ips.map(freePortOn));
  gossipPorts = await Promise.all(ips.map(freePortOn));
  await node(0, (w) => {
    assert.match(ok(w.cli('cluster', 'init'), 'cluster init'), /created cluster CA/);
  }).start();
  for (const i of [1, 2]) {
    const token = ok(nodes[0]!.cli('cluster', 'token', ips[i]!), 'cluster token').trim();
    await node(i, (w) => {
      assert.match(ok(w.cli('cluster', 'join', token), 'cluster join'), /joined/);
    }).start();
  }
});

after(async () => {
  for (const r of rules.splice(0)) spawnSync('iptables', ['-D', ...r]);
  // SIGTERM first: each wrapper stops its upstream child; then anything left under root
  // (the upstream orphaned by the kill -9 test).
  for (const w of nodes) await w?.stop().catch(() => undefined);
  for (const w of nodes) await w?.close();
  await killStrays(root);
  fs.rmSync(root, { recursive: true, force: true });
});

test('init, token, join: a service account added on node 1 works on node 3; status shows every peer live', async () => {
  secrets['svc-a'] = nodes[0]!.addServiceAccount('svc-a');
  await until('svc-a works on node 3', async () => (await tokenStatus(nodes[2]!, 'svc-a')) === 200);
  await until('node 1 sees both peers live and in sync', () => {
    const s = status(nodes[0]!);
    return s.peers.length === 2 && s.peers.every((p: any) => p.live && p.lag_entries === 0);
  });
  const s = status(nodes[0]!);
  assert.equal(s.mode, 'eventual');
  assert.deepEqual(s.nodes.map((n: any) => n.node_id).sort(), [...ips].sort());
  const text = nodes[0]!.cli('cluster', 'status').stdout;
  assert.match(text, new RegExp(`${ips[1]!.replace(/\./g, '\\.')}\\s+live`));
  // A join token works once (each attempt from a fresh data dir with node 3's config).
  const token = ok(nodes[0]!.cli('cluster', 'token', ips[2]!), 'token').trim();
  const join = (name: string) => {
    const dir = path.join(root, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.toml'), fs.readFileSync(nodes[2]!.config, 'utf8').replace(/^data_dir = .*$/m, `data_dir = "${path.join(dir, 'data')}"`));
    return spawnSync(CMD[0]!, [...CMD.slice(1), '-c', path.join(dir, 'config.toml'), 'cluster', 'join', token], { encoding: 'utf8' });
  };
  assert.equal(join('join-a').status, 0);
  const again = join('join-b');
  assert.equal(again.status, 1);
  assert.match(again.stderr, /unknown or already used join token/);
});

test('a token for a node outside allowed_node_ids is refused', () => {
  const r = nodes[0]!.cli('cluster', 'token', `${subnet}.99`);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /allowed_node_ids/);
});

test('a node killed with kill -9 and restarted catches up with nothing lost', async () => {
  secrets['svc-k1'] = nodes[2]!.addServiceAccount('svc-k1'); // written on node 3 itself
  await until('svc-k1 on node 1', async () => (await tokenStatus(nodes[0]!, 'svc-k1')) === 200);
  const victim = nodes[2]!;
  const exited = new Promise((r) => victim.child.once('exit', r));
  victim.child.kill('SIGKILL');
  await exited;
  secrets['svc-k2'] = nodes[1]!.addServiceAccount('svc-k2'); // while node 3 is down
  await victim.close();
  await killStrays(victim.root); // its upstream, orphaned by the kill -9
  await node(2).start();
  await until('node 3 caught up (svc-k2)', async () => (await tokenStatus(nodes[2]!, 'svc-k2')) === 200);
  for (const id of ['svc-a', 'svc-k1']) assert.equal(await tokenStatus(nodes[2]!, id), 200, `${id} still on node 3`);
});

test('a partitioned node converges after the partition heals', { skip: !hasIptables && 'needs root and iptables' }, async () => {
  // Node 3 can neither reach nor be reached on the gossip ports.
  const add = (r: string[]) => {
    assert.equal(spawnSync('iptables', ['-A', ...r]).status, 0);
    rules.push(r);
  };
  add(['OUTPUT', '-p', 'tcp', '-d', ips[2]!, '--dport', String(gossipPorts[2]), '-j', 'DROP']);
  for (const j of [0, 1]) add(['OUTPUT', '-p', 'tcp', '-s', ips[2]!, '-d', ips[j]!, '--dport', String(gossipPorts[j]), '-j', 'DROP']);
  await until('node 3 sees both peers down', () => status(nodes[2]!).peers.every((p: any) => !p.live), 30_000);
  await until('node 1 sees node 3 down', () => status(nodes[0]!).peers.some((p: any) => p.node_id === ips[2] && !p.live), 30_000);
  secrets['svc-p3'] = nodes[2]!.addServiceAccount('svc-p3');
  secrets['svc-p1'] = nodes[0]!.addServiceAccount('svc-p1');
  // Both sides keep serving their own writes during the partition.
  await until('svc-p3 on node 3', async () => (await tokenStatus(nodes[2]!, 'svc-p3')) === 200);
  await until('svc-p1 on node 2', async () => (await tokenStatus(nodes[1]!, 'svc-p1')) === 200);
  assert.equal(await tokenStatus(nodes[2]!, 'svc-p1'), 401, 'not across the partition');
  assert.equal(await tokenStatus(nodes[0]!, 'svc-p3'), 401, 'not across the partition');
  for (const r of rules.splice(0)) spawnSync('iptables', ['-D', ...r]);
  await until('svc-p1 reaches node 3', async () => (await tokenStatus(nodes[2]!, 'svc-p1')) === 200, 30_000);
  await until('svc-p3 reaches node 1', async () => (await tokenStatus(nodes[0]!, 'svc-p3')) === 200, 30_000);
  await until('in sync again', () => status(nodes[2]!).peers.every((p: any) => p.live && p.lag_entries === 0), 30_000);
});
