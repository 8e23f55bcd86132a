// The Kiwi ID appliance as the LXC container runs it, without LXC: the tree
// `lxc/build-rootfs` makes, laid over this machine's Debian as the
// container's base, booted in its own network namespace (10.10.20.10 on a
// veth, like the container's eth0 on kiwibr0) the way systemd boots it:
// sysusers, tmpfiles, kiwi-id-firstboot and kiwi-id-loopback (root), then
// kiwi-id.service as the user `kiwi`. A second namespace at 10.10.20.11
// plays a KiwiStack service.
//
// How the layout is laid over the base: in the appliance's mount namespace
// (private to `ip netns exec`), /etc, /opt, /var and /usr are overlays of
// [state upper] over [rootfs] over [the host's directory]. The rootfs's own
// directories (/etc/kiwi, /opt/upstream, /opt/kiwi, /var/lib/{kiwi,upstream},
// /var/log/kiwi, /usr/lib/kiwi-id, /usr/share/kanidm) are marked opaque, so
// nothing of the host shows through there. What the appliance writes (keys,
// Kanidm's database, /etc/passwd with the kiwi user) lands in the state
// uppers, which persist across boots; nothing outside the temp dir changes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { REPO, UPSTREAM_PREFIX } from './kiwi-node.js';
import { waitFor } from '../../component/harness/wait.js';
import { stopChild } from './processes.js';

export const APP_IP = '10.10.20.10';
export const SERVICE_IP = '10.10.20.11';
/** The issuer of the shipped config (lxc/rootfs/etc/kiwi/config.toml). */
export const ISSUER = 'https://id.kiwistack.internal:8443';

const LAYERS = ['etc', 'opt', 'var', 'usr'] as const;
const OWN_DIRS = ['etc/kiwi', 'opt/upstream', 'opt/kiwi', 'var/lib/kiwi', 'var/lib/upstream', 'var/log/kiwi', 'usr/lib/kiwi-id', 'usr/share/kanidm'];
const FIXTURE = path.join(REPO, 'test/integration/fixtures/kiwi-service.ts');
const RUN = process.env.KIWI_TEST_RUN ?? 'manual';

/** Why the appliance cannot run here, or undefined when it can. */
export function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network and mount namespaces)';
  for (const tool of ['ip', 'nsenter', 'setpriv', 'systemd-sysusers', 'systemd-tmpfiles', 'python3']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `needs ${tool}`;
  }
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'needs ip netns';
  return undefined;
}

export interface ExecResult {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

export class Appliance {
  readonly tag = randomBytes(3).toString('hex');
  // Unique per run (scripts/test sets KIWI_TEST_RUN and removes, and fails on, any left over).
  readonly nsApp = `kiwi-app-${RUN}-${this.tag}`;
  readonly nsService = `kiwi-svc-${RUN}-${this.tag}`;
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-it-appliance-'));
  readonly rootfs = path.join(this.dir, 'rootfs');
  readonly state = path.join(this.dir, 'state');
  child: ChildProcess | undefined;
  /** Output of every boot, in order (firstboot's report, then the wrapper's JSON log). */
  out: string[] = [];
  private netnsUp = false;

  /** `lxc/build-rootfs` into the temp dir; the appliance's own directories made opaque over the host. */
  async build(): Promise<void> {
    const r = await execa('bash', [path.join(REPO, 'lxc/build-rootfs'), this.rootfs, '--upstream', UPSTREAM_PREFIX], { reject: false });
    if (r.exitCode !== 0) throw new Error(`lxc/build-rootfs failed: ${r.stderr}`);
    const dirs = OWN_DIRS.map((d) => path.join(this.rootfs, d));
    await execa('python3', ['-c', 'import os,sys\nfor d in sys.argv[1:]: os.setxattr(d, "trusted.overlay.opaque", b"y")', ...dirs]);
    for (const l of LAYERS) for (const sub of ['up', 'work']) fs.mkdirSync(path.join(this.state, l, sub), { recursive: true });
  }

  /** The two namespaces and the veth between them (the private bridge, reduced to one link). */
  async network(): Promise<void> {
    const ip = (...args: string[]) => execa('ip', args);
    const [a, b] = [`kv-a-${this.tag}`, `kv-b-${this.tag}`];
    await ip('netns', 'add', this.nsApp);
    await ip('netns', 'add', this.nsService);
    this.netnsUp = true;
    await ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    await ip('link', 'set', a, 'netns', this.nsApp);
    await ip('link', 'set', b, 'netns', this.nsService);
    await ip('-n', this.nsApp, 'addr', 'add', `${APP_IP}/24`, 'dev', a);
    await ip('-n', this.nsService, 'addr', 'add', `${SERVICE_IP}/24`, 'dev', b);
    for (const [ns, dev] of [[this.nsApp, a], [this.nsService, b]] as const) {
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }
  }

  private mounts(): string {
    return LAYERS.map(
      (l) => `mount -t overlay kiwi-${l} -o lowerdir=${this.rootfs}/${l}:/${l},upperdir=${this.state}/${l}/up,workdir=${this.state}/${l}/work /${l}`,
    ).join('\n');
  }

  /**
   * One boot: the units in systemd's order, then `kiwi-id run` as `kiwi`
   * (NoNewPrivileges, UMask 0077, a clean environment, as kiwi-id.service
   * has). Resolves once the wrapper listens and Kanidm is healthy.
   */
  async boot(): Promise<void> {
    const script = [
      'set -eu',
      this.mounts(),
      'systemd-sysusers /usr/lib/sysusers.d/kiwi-id.conf',
      'systemd-tmpfiles --create /usr/lib/tmpfiles.d/kiwi-id.conf',
      '/usr/lib/kiwi-id/firstboot',
      '/usr/lib/kiwi-id/loopback-quickack',
      'umask 0077',
      'exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/kiwi LANG=C.UTF-8 ' +
        'setpriv --reuid=kiwi --regid=kiwi --init-groups --no-new-privs /opt/kiwi/bin/kiwi-id -c /etc/kiwi/config.toml run',
    ].join('\n');
    const from = this.out.length;
    const child = spawn('ip', ['netns', 'exec', this.nsApp, 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d) => this.out.push(String(d)));
    child.stderr!.on('data', (d) => this.out.push(String(d)));
    await this.until('the wrapper listening with Kanidm healthy', async () => {
      if (child.exitCode !== null) throw new Error(`boot exited with ${child.exitCode}`);
      const lines = this.lines(from);
      return lines.some((l) => l.msg === 'listening') && lines.some((l) => l.msg === 'upstream state' && l.to === 'healthy');
    }, 240_000);
  }

  /** SIGTERM (or another signal) to the wrapper; resolves with its exit code. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    return stopChild(this.child, signal);
  }

  /** A command inside the running appliance (its mounts and network), as root: what `lxc-attach` gives an operator. */
  async exec(cmd: string[], o: { env?: Record<string, string>; input?: string } = {}): Promise<ExecResult> {
    if (!this.child?.pid || this.child.exitCode !== null) throw new Error('the appliance is not running');
    const r = await execa('nsenter', ['--target', String(this.child.pid), '--mount', '--net', '--', ...cmd], {
      reject: false,
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', ...o.env },
      extendEnv: false,
      input: o.input,
      timeout: 120_000,
    });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }

  /**
   * The KiwiStack service side: runs the service fixture in the 10.10.20.11
   * namespace with one JSON request; returns its JSON answer.
   */
  async service<T = Record<string, unknown>>(request: Record<string, unknown>): Promise<T> {
    const r = await execa('ip', ['netns', 'exec', this.nsService, process.execPath, '--import', 'tsx', FIXTURE, JSON.stringify(request)], {
      cwd: REPO,
      reject: false,
      timeout: 120_000,
    });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as T;
    } catch {
      throw new Error(`service fixture (${String(request.action)}) exit ${r.exitCode}: ${r.stderr || r.stdout}`);
    }
  }

  /** An appliance file as it is now: what the appliance wrote (state), else what the rootfs shipped. */
  file(p: string): string {
    const rel = p.replace(/^\//, '');
    const layer = rel.split('/')[0]!;
    const written = path.join(this.state, layer, 'up', rel.slice(layer.length + 1));
    return fs.existsSync(written) ? written : path.join(this.rootfs, rel);
  }

  /** JSON log lines of all boots (or from output chunk `from` on). */
  lines(from = 0): Array<Record<string, any>> {
    return this.out.slice(from).join('').split('\n').filter(Boolean).map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return { raw: l };
      }
    });
  }

  tail(n = 3000): string {
    return this.out.join('').slice(-n);
  }

  async until(what: string, ok: () => Promise<boolean>, ms = 120_000): Promise<void> {
    await waitFor(ok, { what: `appliance: ${what}`, timeoutMs: ms, intervalMs: 100, detail: () => this.tail(), fatal: (e) => e.message?.startsWith('boot exited') });
  }


  /** Stops the appliance, kills whatever is left in its namespace, removes namespaces and files. */
  async close(): Promise<void> {
    await this.stop('SIGTERM').catch(() => undefined);
    if (this.netnsUp) {
      const pids = spawnSync('ip', ['netns', 'pids', this.nsApp], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      spawnSync('ip', ['netns', 'del', this.nsApp]);
      spawnSync('ip', ['netns', 'del', this.nsService]);
    }
    if (!process.env.KIWI_KEEP_TEST_DIRS) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
