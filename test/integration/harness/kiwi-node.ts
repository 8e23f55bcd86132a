// A whole Kiwi ID node with a real Kanidm, started the way an operator does:
// `kiwi-id init` (first boot: keys, Kanidm's server.toml and TLS, admin
// passwords, Kiwi ID registered as Kanidm's OAuth2 client) then `kiwi-id run`.
// Everything lives in one temp dir; ports are picked free. The Kanidm
// binaries are the pinned build installed by scripts/install-upstream
// (KIWI_TEST_UPSTREAM, default .kiwi-dev/upstream).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { Agent, request } from 'undici';
import { freePort } from '../../e2e/net.js';
import { waitFor } from '../../component/harness/wait.js';
import { stopChild } from './processes.js';

export const REPO = path.resolve(import.meta.dirname, '../../..');
export const UPSTREAM_PREFIX = path.resolve(process.env.KIWI_TEST_UPSTREAM ?? path.join(REPO, '.kiwi-dev/upstream'));
const KIWI = path.join(REPO, 'wrapper/bin/kiwi-id.js');
export const COMPATIBILITY = path.resolve(process.env.KIWI_COMPATIBILITY_FILE ?? path.join(REPO, 'compatibility.toml'));

export interface KiwiNodeOptions {
  /** Short name used in temp dirs and error messages. */
  name?: string;
  /** Extra top-level config lines (TOML), e.g. `health_check_timeout = "3s"`. */
  extraConfig?: string[];
  /** Extra config sections, appended after the top-level keys. */
  extraSections?: string[];
  listenHost?: string;
  /** Public host name of the issuer (default localhost). */
  publicHost?: string;
  /** Keep only the last N output chunks (benchmarks: the request log grows without bound). */
  keepOutput?: number;
}

export interface CliResult {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

export class KiwiNode {
  readonly root: string;
  readonly config: string;
  readonly out: string[] = [];
  private readonly parsed: Array<Record<string, any>> = [];
  listenPort = 0;
  upstreamPort = 0;
  base = '';
  child: ChildProcess | undefined;
  dispatcher: Agent | undefined;
  /** HOME of the `kiwi-id` commands this node runs (the Kanidm CLI keeps its tokens below it). */
  readonly cliHome: string;

  constructor(readonly o: KiwiNodeOptions = {}) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), `kiwi-it-${o.name ?? 'node'}-`));
    this.config = path.join(this.root, 'config.toml');
    this.cliHome = path.join(this.root, 'cli-home');
    fs.mkdirSync(this.cliHome, { mode: 0o700 });
  }

  get caPath(): string {
    return path.join(this.root, 'tls/ca.crt');
  }
  get upstreamCaPath(): string {
    return path.join(this.root, 'upstream/etc/tls/ca.pem');
  }
  get upstreamConfig(): string {
    return path.join(this.root, 'upstream/etc/server.toml');
  }
  get dbPath(): string {
    return path.join(this.root, 'upstream/data/kanidm.db');
  }
  get upstreamUrl(): string {
    return `https://127.0.0.1:${this.upstreamPort}`;
  }
  password(account: 'idm_admin' | 'admin'): string {
    return fs.readFileSync(path.join(this.root, `${account}.password`), 'utf8').trim();
  }

  /** Writes config.toml for this node (ports picked now). */
  async writeConfig(): Promise<void> {
    this.listenPort = await freePort();
    this.upstreamPort = await freePort();
    const host = this.o.listenHost ?? '127.0.0.1';
    const publicHost = this.o.publicHost ?? 'localhost';
    this.base = `https://${publicHost}:${this.listenPort}`;
    const overridden = new Set((this.o.extraConfig ?? []).map((line) => line.split('=')[0]!.trim()));
    fs.writeFileSync(
      this.config,
      [
        `listen_addr = "${host}:${this.listenPort}"`,
        `issuer = "${this.base}"`,
        'tls_cert = "tls/wrapper.crt"',
        'tls_key = "private/wrapper.key"',
        `upstream_addr = "${this.upstreamUrl}"`,
        `upstream_bin = ${JSON.stringify(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'))}`,
        'upstream_config = "upstream/etc/server.toml"',
        'upstream_db_path = "upstream/data/kanidm.db"',
        `compatibility_file = ${JSON.stringify(COMPATIBILITY)}`,
        'jwt_private_key = "private/jwt-private.pem"',
        'jwt_public_key = "jwt-public.pem"',
        'data_dir = "data"',
        'log_dir = "log"',
        ...[
          'health_check_interval = "1s"',
          'health_check_timeout = "30s"',
          'drain_timeout = "10s"',
        ].filter((line) => !overridden.has(line.split(' = ')[0]!)), // extraConfig may set these
        ...(this.o.extraConfig ?? []),
        '',
        ...(this.o.extraSections ?? []),
        '',
      ].join('\n'),
    );
  }

  /** `kiwi-id <args>` against this node's config. */
  async kiwi(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
    const r = await execa(process.execPath, [KIWI, '-c', this.config, ...args], {
      reject: false,
      input: opts.input,
      env: { HOME: this.cliHome, ...opts.env },
      timeout: 300_000,
    });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }

  /** First boot. */
  async init(): Promise<CliResult> {
    if (!this.base) await this.writeConfig();
    const r = await this.kiwi(['init']);
    if (r.exitCode !== 0) throw new Error(`kiwi-id init (${this.o.name ?? 'node'}) failed: ${r.stderr}\n${r.stdout}`);
    return r;
  }

  /**
   * Starts `kiwi-id run`; resolves once /readyz is 200 (Kanidm healthy), or
   * with `{ ready: false }` once the wrapper answers /healthz (Kanidm may be
   * failing: crash-loop tests).
   */
  async start(o: { ready?: boolean } = {}): Promise<void> {
    this.dispatcher ??= new Agent({ connect: { ca: fs.readFileSync(this.caPath) } });
    this.child = spawn(process.execPath, [KIWI, '-c', this.config, 'run'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HOME: this.cliHome },
    });
    const child = this.child;
    const keep = (d: Buffer) => {
      this.out.push(String(d));
      if (this.o.keepOutput && this.out.length > this.o.keepOutput * 2) this.out.splice(0, this.out.length - this.o.keepOutput);
    };
    // Each line is parsed once, as it arrives: tests poll lines() while a
    // load run logs thousands of requests a second.
    const parseLines = () => {
      let partial = '';
      return (d: Buffer) => {
        const parts = (partial + String(d)).split('\n');
        partial = parts.pop()!;
        for (const l of parts) if (l) this.parsed.push(parseLine(l));
        const max = this.o.keepOutput ? this.o.keepOutput * 16 : Infinity;
        if (this.parsed.length > max * 2) this.parsed.splice(0, this.parsed.length - max);
      };
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.on('data', keep);
      stream.on('data', parseLines());
    }
    const probe = o.ready === false ? '/healthz' : '/readyz';
    await this.until(o.ready === false ? 'liveness' : 'readiness', async () => {
      if (child.exitCode !== null) throw new Error(`kiwi-id run exited with ${child.exitCode}`);
      return (await this.get(probe)).status === 200;
    });
  }

  async get(p: string, init: Parameters<typeof request>[1] = {}) {
    const res = await request(this.base + p, { dispatcher: this.dispatcher, ...init });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  /** Polls `ok` until true (errors count as not yet), failing after `ms` with the node's recent output. */
  async until(what: string, ok: () => Promise<boolean>, ms = 120_000): Promise<void> {
    await waitFor(ok, { what: `${this.o.name ?? 'node'}: ${what}`, timeoutMs: ms, intervalMs: 100, detail: () => this.tail(), fatal: (e) => e.message?.startsWith('kiwi-id run exited') });
  }


  tail(n = 3000): string {
    return this.out.join('').slice(-n);
  }

  /** JSON log lines of the wrapper (complete lines, every run of this node; `{raw}` for other output). */
  lines(): Array<Record<string, any>> {
    return this.parsed.slice();
  }

  /** The pid of the kanidmd the wrapper supervises now (from its log). */
  kanidmdPid(): number | undefined {
    return this.lines().filter((l) => l.msg === 'upstream started').at(-1)?.pid;
  }

  /** One sample of the wrapper's /metrics (first series named `name`), or undefined. */
  async metric(name: string): Promise<number | undefined> {
    const text = (await this.get('/metrics')).text;
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  }

  /** `kiwi-id kanidm …` logged in as idm_admin (token cached in this node's private HOME). */
  async kanidm(args: string[]): Promise<CliResult> {
    return this.kiwi(['kanidm', ...args, '-D', 'idm_admin']);
  }

  async loginIdmAdmin(): Promise<void> {
    const r = await this.kiwi(['kanidm', 'login', '-D', 'idm_admin'], { env: { KANIDM_PASSWORD: this.password('idm_admin') } });
    if (r.exitCode !== 0) throw new Error(`kanidm login failed: ${r.stderr}`);
  }

  /** SIGTERM (or another signal) to the wrapper; resolves with its exit code. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    return stopChild(this.child, signal);
  }

  /** Stops everything this node started and removes its files. Safe to call twice. */
  async close(): Promise<void> {
    await this.stop('SIGTERM').catch(() => undefined);
    await killStrays(this.root);
    await this.dispatcher?.close();
    this.dispatcher = undefined;
    if (!process.env.KIWI_KEEP_TEST_DIRS) fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Any process whose command line names `root` (a kanidmd orphaned by a test that killed its wrapper). */
export async function killStrays(root: string): Promise<number[]> {
  const killed: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(root) && Number(pid) !== process.pid) {
      try {
        process.kill(Number(pid), 'SIGKILL');
        killed.push(Number(pid));
      } catch {
        /* already gone */
      }
    }
  }
  return killed;
}

function parseLine(l: string): Record<string, any> {
  try {
    return JSON.parse(l);
  } catch {
    return { raw: l };
  }
}
