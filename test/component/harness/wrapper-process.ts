// A whole `kiwi-id run` process with everything it needs in a temp dir: listener
// TLS, JWT keys, a config, and as its upstream the scripted child of the
// supervisor tests (fixtures/status-server.mjs), pinned by its own checksum.
// `command` is how kiwi-id is started (tsx from source, or the built artifact).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { generateSigningKeyPair } from '../../../wrapper/src/crypto/keys.js';
import { localCertificate } from './certs.js';
import { freePort } from '../../e2e/net.js';

const FIXTURE = path.resolve('test/component/fixtures/status-server.mjs');

export interface WrapperProcessOptions {
  /** Listener address (default 127.0.0.1 on a free port). */
  listenHost?: string;
  listenPort?: number;
  /** Upstream loopback port (default: a free one). */
  upstreamPort?: number;
  /** Readiness check (default: GET /readyz from this process). */
  ready?: (w: WrapperProcess) => Promise<boolean>;
  /** Lines appended to config.toml (e.g. node_id and the [gossip]/[cluster] tables). */
  extraConfig?: readonly string[];
  /** Runs after the files are written and before `kiwi-id run` starts (e.g. `cluster join`). */
  beforeRun?: (w: WrapperProcess) => void | Promise<void>;
}

export class WrapperProcess {
  readonly out: string[] = [];
  child!: ChildProcess;
  base = '';
  dispatcher!: Agent;
  readonly config: string;

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

  /** Writes the files, starts `kiwi-id run`, resolves once /readyz says ready. */
  async start(): Promise<void> {
    const root = this.root;
    const host = this.o.listenHost ?? '127.0.0.1';
    const listener = localCertificate(root, 'wrapper', [...new Set(['127.0.0.1', host])]);
    const upstream = localCertificate(root, 'upstream');
    await generateSigningKeyPair(path.join(root, 'jwt-private.pem'), path.join(root, 'jwt-public.pem'));
    const bin = path.join(root, 'bin/kanidmd');
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    fs.copyFileSync(FIXTURE, bin);
    fs.chmodSync(bin, 0o755);
    const sum = 'sha256:' + createHash('sha256').update(fs.readFileSync(bin)).digest('hex');
    fs.writeFileSync(path.join(root, 'compatibility.toml'), `[upstream]\nname = "kanidm"\nversion = "test"\n[upstream.checksums]\n"bin/kanidmd" = "${sum}"\n`);
    const upstreamPort = this.o.upstreamPort ?? (await freePort());
    fs.writeFileSync(path.join(root, 'upstream.json'), JSON.stringify({ port: upstreamPort, cert: upstream.certPath, key: upstream.keyPath, mode: 'ok' }));
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
        'health_check_interval = "200ms"',
        'health_check_timeout = "5s"',
        'jwt_private_key = "jwt-private.pem"',
        'jwt_public_key = "jwt-public.pem"',
        'data_dir = "data"',
        'drain_timeout = "3s"',
        ...(this.o.extraConfig ?? []),
      ].join('\n'),
    );
    this.base = `https://${publicHost}:${port}`;
    this.dispatcher = new Agent({ connect: { ca: fs.readFileSync(listener.caPath) } });
    await this.o.beforeRun?.(this);
    const [cmd, ...args] = this.command;
    this.child = spawn(cmd!, [...args, '-c', this.config, 'run'], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    this.child.stdout!.on('data', (d) => this.out.push(String(d)));
    this.child.stderr!.on('data', (d) => this.out.push(String(d)));
    await this.until('readiness', this.o.ready ? () => this.o.ready!(this) : async () => (await this.get('/readyz')).status === 200);
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

  async until(what: string, ok: () => Promise<boolean>, ms = 15_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await ok().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}\n${this.out.join('').slice(-2000)}`);
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

  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return Promise.resolve(this.child.exitCode);
    const exited = new Promise<number | null>((r) => this.child.once('exit', (code) => r(code)));
    this.child.kill('SIGTERM');
    return exited;
  }

  async close(): Promise<void> {
    if (this.child?.exitCode === null) this.child.kill('SIGKILL');
    await this.dispatcher?.close();
  }
}
