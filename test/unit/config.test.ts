import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, validateConfig } from '../../wrapper/src/config/config.js';
import { parse } from 'smol-toml';

let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-config-'));
  fs.mkdirSync(path.join(dir, 'keys'));
  for (const [name, mode] of [
    ['tls.crt', 0o644],
    ['tls.key', 0o600],
    ['jwt-private.pem', 0o600],
    ['jwt-public.pem', 0o644],
    ['upstream-ca.pem', 0o644],
  ] as const) {
    const file = path.join(dir, 'keys', name);
    fs.writeFileSync(file, 'not really PEM\n');
    fs.chmodSync(file, mode); // explicit chmod: writeFileSync's mode is subject to umask
  }
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Minimal valid config using relative paths, plus any extra lines. */
function minimal(extra = ''): string {
  return [
    'listen_addr = "0.0.0.0:8080"',
    'tls_cert = "keys/tls.crt"',
    'tls_key = "keys/tls.key"',
    'jwt_private_key = "keys/jwt-private.pem"',
    'jwt_public_key = "keys/jwt-public.pem"',
    extra,
  ].join('\n');
}

let counter = 0;
function writeConfig(text: string): string {
  const file = path.join(dir, `config-${counter++}.toml`);
  fs.writeFileSync(file, text);
  return file;
}

/** Asserts loading `text` fails with a one-line ConfigError naming the file and `key`. */
function assertRejected(text: string, key: string, detail?: RegExp): ConfigError {
  const file = writeConfig(text);
  let caught: unknown;
  try {
    loadConfig(file);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected ConfigError, got ${String(caught)}`);
  assert.equal(caught.file, file);
  assert.equal(caught.key, key);
  assert.ok(caught.message.startsWith(`${file}: ${key}: `), caught.message);
  assert.ok(!caught.message.includes('\n'), 'message must be one line');
  if (detail) assert.match(caught.message, detail);
  return caught;
}

test('a full config loads with every value honoured', () => {
  const file = writeConfig(`
listen_addr = "[::1]:9443"
issuer = "https://id.example.com"
tls_cert = "${dir}/keys/tls.crt"
tls_key = "keys/tls.key"
upstream_addr = "https://localhost:18443/"
upstream_bin = "/usr/local/kanidm/bin/kanidmd"
upstream_config = "upstream/server.toml"
upstream_ca = "keys/upstream-ca.pem"
compatibility_file = "compat.toml"
health_check_interval = "500ms"
health_check_timeout = "2m"
jwt_private_key = "keys/jwt-private.pem"
jwt_public_key = "keys/jwt-public.pem"
log_level = "debug"
log_dir = "logs"
data_dir = "data"
drain_timeout = "3s"
upstream_timeout = "1h"
max_body_size = "64KiB"
max_header_size = 8192
workers = 2
heap_growing_percent = 0
node_id = "kiwi-1.bridge"
issuer_aliases = ["https://10.10.20.10:9443"]

[gossip]
peers = ["https://kiwi-1.bridge:8445", "https://kiwi-2.bridge:8445/"]
interval_secs = 2
allowed_node_ids = ["kiwi-1.bridge", "kiwi-2.bridge"]
tombstone_ttl_secs = 3600

[cluster]
distributed_mode = "forwarding"
quorum_k = 2
quorum_timeout_ms = 250
quorum_fallback = true
kanidm_replication_addr = "10.10.20.10:8444"

[tokens]
access_token_ttl = 300
refresh_token_ttl = 7200
auth_code_ttl = 30
id_token_ttl = 600
session_ttl = 1800

[clients]
file = "/etc/kiwi/clients.toml"

[upstream_oauth2]
client_id = "kiwi-sso"
client_secret_file = "secrets/kanidm-client"
`);
  const c = loadConfig(file);
  assert.deepEqual(c, {
    config_file: file,
    listen_addr: '[::1]:9443',
    listen_host: '::1',
    listen_port: 9443,
    issuer: 'https://id.example.com',
    tls_cert: path.join(dir, 'keys/tls.crt'),
    tls_key: path.join(dir, 'keys/tls.key'),
    upstream_addr: 'https://localhost:18443',
    upstream_bin: '/usr/local/kanidm/bin/kanidmd',
    upstream_cli: '/usr/local/kanidm/bin/kanidm',
    upstream_config: path.join(dir, 'upstream/server.toml'),
    upstream_ca: path.join(dir, 'keys/upstream-ca.pem'),
    upstream_db_path: '/var/lib/upstream/kanidm.db',
    compatibility_file: path.join(dir, 'compat.toml'),
    health_check_interval_ms: 500,
    health_check_timeout_ms: 120_000,
    jwt_private_key: path.join(dir, 'keys/jwt-private.pem'),
    jwt_public_key: path.join(dir, 'keys/jwt-public.pem'),
    log_level: 'debug',
    log_dir: path.join(dir, 'logs'),
    data_dir: path.join(dir, 'data'),
    drain_timeout_ms: 3_000,
    upstream_timeout_ms: 3_600_000,
    max_body_size: 65_536,
    max_header_size: 8192,
    workers: 2,
    heap_growing_percent: 0,
    tokens: {
      access_token_ttl: 300,
      refresh_token_ttl: 7200,
      auth_code_ttl: 30,
      id_token_ttl: 600,
      session_ttl: 1800,
      device_code_ttl: 600,
    },
    auth_rate_limit: 20,
    clients: { file: '/etc/kiwi/clients.toml' },
    upstream_oauth2: { client_id: 'kiwi-sso', client_secret_file: path.join(dir, 'secrets/kanidm-client'), recheck_interval_ms: 10_000 },
    backchannel_logout: { ca_file: undefined, timeout_ms: 5000, max_attempts: 6 },
    federation: {
      trusted_issuers: [],
      max_clock_skew_secs: 30,
      max_assertion_lifetime_secs: 3600,
      kanidm_token_file: path.join(dir, 'data/kanidm-reader.token'),
      upstream_idps: [],
    },
    cluster: {
      node_id: 'kiwi-1.bridge',
      issuer_aliases: ['https://10.10.20.10:9443'],
      // The entry naming this node is this node: its port is the gossip listener's.
      gossip: { peers: ['https://kiwi-2.bridge:8445'], interval_secs: 2, allowed_node_ids: ['kiwi-1.bridge', 'kiwi-2.bridge'], tombstone_ttl_secs: 3600, listen_host: '::1', listen_port: 8445 },
      cluster: { distributed_mode: 'forwarding', quorum_k: 2, quorum_timeout_ms: 250, quorum_fallback: true, kanidm_replication: true, kanidm_replication_host: '10.10.20.10', kanidm_replication_port: 8444 },
      enabled: true,
    },
  });
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.tokens) && Object.isFrozen(c.clients));
});

test('a minimal config gets the documented defaults', () => {
  const c = validateConfig(parse(minimal()), path.join(dir, 'minimal.toml'), { checkFiles: false });
  assert.equal(c.listen_host, '0.0.0.0');
  assert.equal(c.listen_port, 8080);
  assert.equal(c.issuer, 'https://0.0.0.0:8080');
  assert.equal(c.upstream_addr, 'https://127.0.0.1:8443');
  assert.equal(c.upstream_bin, '/opt/upstream/bin/kanidmd');
  assert.equal(c.upstream_cli, '/opt/upstream/bin/kanidm');
  assert.equal(c.upstream_config, '/opt/upstream/etc/server.toml');
  assert.equal(c.upstream_ca, '/opt/upstream/etc/tls/ca.pem', 'the CA first boot makes beside server.toml');
  assert.equal(c.compatibility_file, '/opt/kiwi/compatibility.toml');
  assert.equal(c.health_check_interval_ms, 5_000);
  assert.equal(c.health_check_timeout_ms, 60_000);
  assert.equal(c.log_level, 'info');
  assert.equal(c.log_dir, undefined);
  assert.equal(c.data_dir, '/var/lib/kiwi');
  assert.equal(c.drain_timeout_ms, 10_000);
  assert.equal(c.upstream_timeout_ms, 30_000);
  assert.equal(c.max_body_size, 1_048_576);
  assert.equal(c.max_header_size, 16_384);
  assert.equal(c.workers, 1);
  assert.equal(c.heap_growing_percent, 30);
  assert.deepEqual(c.tokens, {
    access_token_ttl: 900,
    refresh_token_ttl: 86400,
    auth_code_ttl: 60,
    id_token_ttl: 900,
    session_ttl: 3600,
    device_code_ttl: 600,
  });
  assert.equal(c.clients.file, '/var/lib/kiwi/clients.toml');
  assert.equal(c.clients.registration_token, undefined, 'dynamic client registration is off by default');
  assert.deepEqual(c.backchannel_logout, { ca_file: undefined, timeout_ms: 5000, max_attempts: 6 });
});

test('validateConfig with checkFiles=false applies defaults without touching the disk', () => {
  const c = validateConfig(
    { listen_addr: 'id.example.com:443', tls_cert: '/nope/c.pem', tls_key: '/nope/k.pem' },
    '/etc/kiwi/config.toml',
    { checkFiles: false },
  );
  assert.equal(c.issuer, 'https://id.example.com:443');
  assert.equal(c.jwt_private_key, '/etc/kiwi/jwt-private.pem');
  assert.equal(c.jwt_public_key, '/etc/kiwi/jwt-public.pem');
  assert.equal(c.config_file, '/etc/kiwi/config.toml');
});

test('error message format matches the documented example', () => {
  assert.throws(
    () =>
      validateConfig(
        { listen_addr: 'a:1', tls_cert: 'c', tls_key: 'k', health_check_interval: '5 seconds' },
        '/etc/kiwi/config.toml',
        { checkFiles: false },
      ),
    {
      name: 'ConfigError',
      message:
        '/etc/kiwi/config.toml: health_check_interval: "5 seconds" is not a duration (use e.g. 500ms, 5s, 2m)',
    },
  );
});

test('unknown top-level key', () => {
  assertRejected(minimal('listen_adr = "x"'), 'listen_adr', /unknown key/);
});

test('unknown key in [tokens]', () => {
  assertRejected(minimal('[tokens]\nfoo = 1'), '[tokens].foo', /unknown key/);
});

test('unknown key in [clients]', () => {
  assertRejected(minimal('[clients]\npath = "x"'), '[clients].path', /unknown key/);
});

test('wrong types name the expected type', () => {
  assertRejected(minimal('log_dir = 5'), 'log_dir', /expected a string, got integer/);
  assertRejected(minimal('health_check_interval = 5'), 'health_check_interval', /expected a duration string like "5s", got integer/);
  assertRejected(minimal('max_body_size = true'), 'max_body_size', /expected a byte size .* got boolean/);
  assertRejected(minimal('tokens = "x"'), 'tokens', /expected a table, got string/);
  assertRejected(minimal('[tokens]\nsession_ttl = "1h"'), '[tokens].session_ttl', /expected a positive integer \(seconds\), got string/);
  assertRejected(minimal('[tokens]\nauth_code_ttl = 1.5'), '[tokens].auth_code_ttl', /got float/);
  assertRejected(minimal('[tokens]\nid_token_ttl = 0'), '[tokens].id_token_ttl', /positive integer/);
});

test('bad values', () => {
  assertRejected(minimal('health_check_interval = "5 seconds"'), 'health_check_interval', /"5 seconds" is not a duration \(use e\.g\. 500ms, 5s, 2m\)$/);
  assertRejected(minimal('drain_timeout = "0s"'), 'drain_timeout', /must be greater than 0/);
  assertRejected(minimal('max_header_size = "16KB"'), 'max_header_size', /is not a byte size/);
  assertRejected(minimal('workers = 0'), 'workers', /an integer from 1 to 64, got integer 0/);
  assertRejected(minimal('workers = "auto"'), 'workers', /an integer from 1 to 64, got string/);
  assertRejected(minimal('heap_growing_percent = 301'), 'heap_growing_percent', /an integer from 0 to 300, got integer 301/);
  assertRejected(minimal('heap_growing_percent = 1.5'), 'heap_growing_percent', /an integer from 0 to 300, got float 1.5/);
  assertRejected(minimal('log_level = "verbose"'), 'log_level', /one of error, warn, info, debug, trace/);
  assertRejected(minimal('issuer = "http://id.example.com"'), 'issuer', /must use https/);
  assertRejected(minimal('issuer = "https://id.example.com/"'), 'issuer', /must not end with a slash/);
  assertRejected(minimal('issuer = "https://id.example.com?x=1"'), 'issuer', /query or fragment/);
  assertRejected(minimal('issuer = "https://id.example.com/kiwi"'), 'issuer', /must not contain a path/);
  assertRejected(minimal('upstream_addr = "https://127.0.0.1:8443/api"'), 'upstream_addr', /must not contain a path/);
});

test('bad listen_addr', () => {
  for (const bad of ['localhost', ':443', 'host:0', 'host:65536', 'host:http', '::1:443', '[not-ip]:443', '300.1.1.1:443', 'bad_host:443', '']) {
    const file = writeConfig(minimal().replace('"0.0.0.0:8080"', JSON.stringify(bad)));
    assert.throws(() => loadConfig(file), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.ok(e.message.startsWith(`${file}: listen_addr: `), e.message);
      return true;
    });
  }
  for (const good of ['127.0.0.1:1', '[::]:443', 'id.example.com:65535', 'localhost:8443']) {
    assert.equal(validateConfig({ listen_addr: good, tls_cert: 'c', tls_key: 'k' }, '/x.toml', { checkFiles: false }).listen_addr, good);
  }
});

test('missing listen_addr is required', () => {
  assertRejected('tls_cert = "a"\ntls_key = "b"', 'listen_addr', /is required/);
});

test('http upstream_addr is refused: TLS to the upstream is mandatory', () => {
  assertRejected(minimal('upstream_addr = "http://127.0.0.1:8443"'), 'upstream_addr', /must use https/);
});

test('missing jwt_private_key file', () => {
  assertRejected(
    minimal().replace('keys/jwt-private.pem', 'keys/absent.pem'),
    'jwt_private_key',
    new RegExp(`${path.join(dir, 'keys/absent.pem')} does not exist$`),
  );
});

test('world-readable jwt_private_key', () => {
  const key = path.join(dir, 'keys', 'jwt-world.pem');
  fs.writeFileSync(key, 'x');
  fs.chmodSync(key, 0o604);
  assertRejected(
    minimal().replace('keys/jwt-private.pem', key),
    'jwt_private_key',
    /is readable by group\/others \(mode 0604\); run chmod 600$/,
  );
});

test('tls_key with mode 0644', () => {
  const key = path.join(dir, 'keys', 'tls-0644.key');
  fs.writeFileSync(key, 'x');
  fs.chmodSync(key, 0o644);
  const err = assertRejected(minimal().replace('keys/tls.key', key), 'tls_key');
  assert.equal(err.message.split(': tls_key: ')[1], `${key} is readable by group/others (mode 0644); run chmod 600`);
});

test('health_check_timeout must exceed health_check_interval', () => {
  assertRejected(minimal('health_check_interval = "10s"\nhealth_check_timeout = "10s"'), 'health_check_timeout', /greater than health_check_interval/);
  assertRejected(minimal('health_check_interval = "1m"'), 'health_check_timeout', /greater than health_check_interval/);
});

test('TOML syntax error is one line naming the file and line', () => {
  const file = writeConfig('listen_addr = "0.0.0.0:8080"\ntls_cert = \n');
  assert.throws(() => loadConfig(file), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.key, undefined);
    assert.match(e.message, new RegExp(`^${file}: line 2, column \\d+: invalid TOML: .+$`));
    assert.ok(!e.message.includes('\n'));
    return true;
  });
});

test('unreadable config file names the file', () => {
  const file = path.join(dir, 'does-not-exist.toml');
  assert.throws(() => loadConfig(file), { message: `${file}: cannot read config file (ENOENT)` });
});
