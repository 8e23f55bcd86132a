// The upstream `kanidm` CLI, driven by the wrapper (first-boot provisioning).
// Its login token cache lives in $HOME/.cache; each KanidmCli gets a private
// HOME so the wrapper's admin session never mixes with an operator's, and the
// directory is removed by close().
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface KanidmCliOptions {
  cli: string;
  /** Kanidm's loopback URL. */
  url: string;
  /** The only CA trusted for it. */
  caPath: string;
}

export class KanidmCliError extends Error {
  constructor(
    readonly args: string[],
    readonly exitCode: number | undefined,
    readonly output: string,
  ) {
    super(`kanidm ${args.join(' ')} failed (exit ${exitCode}): ${output}`);
  }
}

export class KanidmCli {
  private readonly home = mkdtempSync(join(tmpdir(), 'kiwi-kanidm-cli-'));
  private user: string | undefined;

  constructor(private readonly o: KanidmCliOptions) {}

  private env(extra: Record<string, string> = {}) {
    return {
      HOME: this.home,
      XDG_CACHE_HOME: join(this.home, '.cache'),
      KANIDM_URL: this.o.url,
      KANIDM_CA_PATH: this.o.caPath,
      RUST_LOG: 'error',
      ...extra,
    };
  }

  /** Logs in with a password handed over in the environment (never on the command line). */
  async login(user: string, password: string): Promise<void> {
    await this.exec(['login', '-D', user], { KANIDM_PASSWORD: password });
    this.user = user;
  }

  /** Runs one command as the logged-in user; returns stdout. */
  async run(args: string[]): Promise<string> {
    const named = this.user ? [...args, '-D', this.user] : args;
    return this.exec(named);
  }

  /** Like run() with `-o json`, parsing the last JSON line of the output. */
  async json<T>(args: string[]): Promise<T> {
    const out = await this.run([...args, '-o', 'json']);
    const line = out.trim().split('\n').filter((l) => l.startsWith('{') || l.startsWith('[')).pop();
    if (!line) throw new KanidmCliError(args, 0, 'no JSON in output');
    return JSON.parse(line) as T;
  }

  private async exec(args: string[], extra?: Record<string, string>): Promise<string> {
    const r = await execa(this.o.cli, args, { reject: false, stdin: 'ignore', env: this.env(extra), extendEnv: false, timeout: 60_000 });
    if (r.exitCode !== 0) {
      const said = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ');
      throw new KanidmCliError(args, r.exitCode, said);
    }
    return r.stdout;
  }

  close(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}
