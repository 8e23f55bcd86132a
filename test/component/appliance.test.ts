// The LXC appliance pieces that can be checked without the pinned Kanidm:
// the rootfs builder's refusal of a wrong upstream, the systemd units (as
// systemd itself parses them) and the shipped config.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'smol-toml';
import { validateConfig } from '../../wrapper/src/config/config.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-appliance-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const sh = (cmd: string, args: string[], opts: { cwd?: string } = {}) => spawnSync(cmd, args, { encoding: 'utf8', ...opts });
const UNITS = ['etc/systemd/system/kiwi-id.service', 'etc/systemd/system/kiwi-id-firstboot.service', 'etc/systemd/system/kiwi-id-loopback.service'];

test('build-rootfs refuses a missing upstream and builds nothing', () => {
  const out = path.join(root, 'missing');
  const r = sh('bash', ['lxc/build-rootfs', out, '--upstream', path.join(root, 'no-such-prefix')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no-such-prefix\/bin\/kanidmd is missing/);
  assert.match(r.stderr, /refusing to build/);
  assert.equal(fs.existsSync(path.join(out, 'opt')), false);
});

test('build-rootfs refuses an upstream that does not match its checksum, naming both hashes', () => {
  const prefix = path.join(root, 'tampered');
  fs.mkdirSync(path.join(prefix, 'bin'), { recursive: true });
  for (const b of ['kanidmd', 'kanidm']) fs.writeFileSync(path.join(prefix, 'bin', b), '#!/bin/sh\n', { mode: 0o755 });
  const out = path.join(root, 'tampered-out');
  const r = sh('bash', ['lxc/build-rootfs', out, '--upstream', prefix]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /checksum mismatch for .*tampered\/bin\/kanidmd: expected \S+ \(compatibility\.toml\), got sha256:[0-9a-f]{64}/);
  assert.equal(fs.existsSync(path.join(out, 'opt')), false);
});

describeUnits();
function describeUnits() {
  const tree = path.join(root, 'tree');
  before(() => {
    // The tree systemd sees: the artifact, our rootfs overlay, and the host's
    // own unit library (for targets like multi-user.target) and kill(1).
    const b = sh('bash', ['scripts/build-artifact', tree]);
    assert.equal(b.status, 0, b.stderr);
    fs.cpSync('lxc/rootfs', tree, { recursive: true });
    fs.cpSync('/usr/lib/systemd/system', path.join(tree, 'usr/lib/systemd/system'), { recursive: true });
    fs.mkdirSync(path.join(tree, 'bin'), { recursive: true });
    fs.copyFileSync('/bin/kill', path.join(tree, 'bin/kill'));
  });

  test('systemd accepts the units (systemd-analyze verify)', () => {
    const r = sh('systemd-analyze', ['verify', `--root=${tree}`, ...UNITS], { cwd: tree });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('kiwi-id.service is hardened as the appliance requires', () => {
    const unit = fs.readFileSync(path.join('lxc/rootfs', UNITS[0]!), 'utf8');
    // KillMode=mixed + SendSIGKILL: Kanidm (same cgroup) never outlives the wrapper, not even a SIGKILLed one.
    for (const line of ['User=kiwi', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'Restart=on-failure', 'CapabilityBoundingSet=', 'KillMode=mixed', 'SendSIGKILL=yes']) {
      assert.match(unit, new RegExp(`^${line}$`, 'm'), line);
    }
    const rw = /^ReadWritePaths=(.*)$/m.exec(unit)?.[1]?.split(/\s+/) ?? [];
    assert.deepEqual(rw.sort(), ['/var/lib/kiwi', '/var/lib/upstream', '/var/log/kiwi']);
    // --threshold is on systemd's internal 0-100 scale: 40 = exposure 4.0 ("OK" band).
    const r = sh('systemd-analyze', ['security', `--root=${tree}`, '--offline=yes', '--threshold=40', UNITS[0]!], { cwd: tree });
    assert.equal(r.status, 0, `exposure above 4.0:\n${r.stdout}`);
  });
}

test('the shipped config is valid and binds only the private-bridge address', () => {
  const file = 'lxc/rootfs/etc/kiwi/config.toml';
  const cfg = validateConfig(parse(fs.readFileSync(file, 'utf8')), file, { checkFiles: false });
  assert.equal(cfg.listen_addr, '10.10.20.10:8443');
  assert.equal(cfg.upstream_addr, 'https://127.0.0.1:8443');
  assert.equal(cfg.upstream_bin, '/opt/upstream/bin/kanidmd');
  assert.equal(cfg.upstream_db_path, '/var/lib/upstream/kanidm.db');
  assert.equal(cfg.log_dir, '/var/log/kiwi');
  assert.match(new URL(cfg.issuer).hostname, /[a-z]/, 'issuer must be a hostname (WebAuthn)');
});
