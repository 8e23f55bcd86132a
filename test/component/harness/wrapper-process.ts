// A whole `kiwi-id run` process with everything it needs in a temp dir: listener
// TLS, JWT keys, a config, and as its upstream the scripted child of the
// supervisor tests (fixtures/status-server.mjs), pinned by its own checksum.
// `command` is how kiwi-id is started (tsx from source, or the built artifact).
// close() always ends the wrapper and its upstream, also after a failed test
// or a wrapper killed with SIGKILL (whose upstream would otherwise live on).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { generateSigningKeyPair } from '../../../wrapper/src/crypto/keys.js';
import { localCertificate } from './certs.js';
import { freePort } from '../../e2e/net.js';
import { endChild, killAllWith } from './processes.js';
import { waitFor } from './wait.js';

const FIXTURE = path.resolve('test/component/fixtures/status-server.mjs');

export interface WrapperProcessOptions {
  /** Listener address (default 127.0.0.1 on a free port). */
  listenHost?: string;
  listenPort?: number;
  /** Upstream loopback port (default: a free one). */
  upstreamPort?: number;
  /** Readiness check (default: GET /readyz from this process). */
  ready?: (w: WrapperProcess) => Promise<boolean>;
}

export class WrapperProcess {
  readonly out: string[] = [];
  child!: ChildProcess;
  base = '';
  dispatcher!: Agent;
  readonly config: string;
  upstreamPort = 0;

  constructor(
    readonly root: string,
    private readonly command: string[],
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly o: WrapperProcessOptions = {},
  ) {
    this.config = path.join(root, 'config.toml');
  }

  /** The listener's CA certificate (what clients trust). */
  get caPath(): string {
    return path.join(this.root, 'wrapper-ca.crt');
  }

  /** The scripted upstream's executable (its path is unique to this instance). */
  get upstreamBin(): string {
    return path.join(this.root, 'bin/kanidmd');
  }

  get upstreamConfig(): string {
    return path.join(this.root, 'upstream.json');
  }

  /** Where the wrapper records its running upstream (data_dir/upstream.pid). */
  get pidFile(): string {
    return path.join(this.root, 'data/upstream.pid');
  }

  /** Writes the files, starts `kiwi-id run`, resolves once /readyz says ready. */
  async start(): Promise<void> {
    await this.prepare();
    await this.launch();
  }

  /** Everything `kiwi-id run` needs, in `root`. */
  async prepare(): Promise<void> {
    const root = this.root;
    const host = this.o.listenHost ?? '127.0.0.1';
    const listener = localCertificate(root, 'wrapper', [...new Set(['127.0.0.1', host])]);
    const upstream = localCertificate(root, 'upstream');
    await generateSigningKeyPair(path.join(root, 'jwt-private.pem'), path.join(root, 'jwt-public.pem'));
    const bin = this.upstreamBin;
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    fs.copyFileSync(FIXTURE, bin);
    fs.chmodSync(bin, 0o755);
    const sum = 'sha256:' + createHash('sha256').update(fs.readFileSync(bin)).digest('hex');
    fs.writeFileSync(path.join(root, 'compatibility.toml'), `[upstream]\nname = "kanidm"\nversion = "test"\n[upstream.checksums]\n"bin/kanidmd" = "${sum}"\n`);
    const upstreamPort = (this.upstreamPort = this.o.upstreamPort ?? (await freePort()));
    fs.writeFileSync(this.upstreamConfig, JSON.stringify({ port: upstreamPort, cert: upstream.certPath, key: upstream.keyPath, mode: 'ok' }));
    const port = this.o.listenPort ?? (await freePort());
    const publicHost = host === '127.0.0.1' ? 'localhost' : host;
    fs.writeFileSync(
      this.config,
      [
        `listen_addr = "${host}:${port}"`,
        `issuer = "https://${publicHost}:${port}"`,
        'tls_cert = "wrapper.crt"',
        'tls_key = "wrapper.key"',
        `upstream_addr = "https://127.0.0.1:${upstreamPort}"`,
        'upstream_bin = "bin/kanidmd"',
        'upstream_config = "upstream.json"',
        'upstream_ca = "upstream-ca.crt"',
        'compatibility_file = "compatibility.toml"',
        'health_check_interval = "1s"', // its probe may take up to 2 s before it counts as failed
        'health_check_timeout = "30s"', // a slow, busy machine is not a broken upstream
        'jwt_private_key = "jwt-private.pem"',
        'jwt_public_key = "jwt-public.pem"',
        'data_dir = "data"',
        'drain_timeout = "3s"',
      ].join('\n'),
    );
    this.base = `https://${publicHost}:${port}`;
    this.dispatcher = new Agent({ connect: { ca: fs.readFileSync(listener.caPath) } });
  }

  /** Starts `kiwi-id run` on the prepared files (again, after a stop or a kill). */
  spawnRun(): ChildProcess {
    const [cmd, ...args] = this.command;
    const child = spawn(cmd!, [...args, '-c', this.config, 'run'], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    child.stdout!.on('data', (d) => this.out.push(String(d)));
    child.stderr!.on('data', (d) => this.out.push(String(d)));
    this.child = child;
    return child;
  }

  /** Starts `kiwi-id run`; resolves once it is ready, rejects if it exits first. */
  async launch(): Promise<void> {
    const child = this.spawnRun();
    const ready = this.o.ready ? () => this.o.ready!(this) : async () => (await this.get('/readyz')).status === 200;
    await this.until('readiness', async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`kiwi-id run exited (${child.exitCode ?? child.signalCode}) before it was ready`);
      return ready();
    });
  }

  /** Starts `kiwi-id run` expecting it to refuse: resolves with its exit code and output. */
  async runToExit(timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
    const from = this.out.length;
    const child = this.spawnRun();
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => {
        reject(new Error(`kiwi-id run still running after ${timeoutMs} ms\n${this.out.slice(from).join('').slice(-2000)}`));
        void endChild(child); // it was expected to refuse; it must not outlive the test either
      }, timeoutMs);
      child.once('exit', (c) => (clearTimeout(t), resolve(c)));
    });
    return { code, output: this.out.slice(from).join('') };
  }

  /** The JSON log lines so far (non-JSON lines as {raw}). */
  lines(): Array<Record<string, any>> {
    return this.out.join('').split('\n').filter(Boolean).map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return { raw: l };
      }
    });
  }

  async get(p: string, init: Parameters<typeof request>[1] = {}) {
    const res = await request(this.base + p, { dispatcher: this.dispatcher, ...init });
    return { status: res.statusCode, text: await res.body.text() };
  }

  /** Polls `ok` until true; the bound is only how long a broken test takes to fail. */
  async until(what: string, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
    await waitFor(ok, { what, timeoutMs: ms, intervalMs: 50, detail: () => this.out.join('').slice(-2000) });
  }

  /** Another kiwi-id command (same command line, same config), e.g. `client add`. */
  cli(...args: string[]) {
    const [cmd, ...pre] = this.command;
    return spawnSync(cmd!, [...pre, '-c', this.config, ...args], { encoding: 'utf8', env: this.env });
  }

  /** A service account; resolves to its client secret. */
  addServiceAccount(id: string): string {
    const r = this.cli('client', 'add', id, '--grant', 'client_credentials');
    if (r.status !== 0) throw new Error(`client add ${id}: ${r.stderr}`);
    return /client_secret: (\S+)/.exec(r.stdout)![1]!;
  }

  /** SIGTERM (SIGKILL if it has not exited after 30 s); resolves with the exit code. */
  stop(): Promise<number | null> {
    return endChild(this.child, 'SIGTERM', 30_000);
  }

  /**
   * Ends everything this instance started, whatever state a failed test left
   * it in: the wrapper (SIGTERM, so it stops its upstream, then SIGKILL) and
   * any scripted upstream still running from this root (e.g. orphaned by a
   * SIGKILL of the wrapper).
   */
  async close(): Promise<void> {
    try {
      if (this.child) await endChild(this.child, 'SIGTERM', 10_000);
    } finally {
      await killAllWith(this.upstreamBin);
      await this.dispatcher?.close();
    }
  }
}
