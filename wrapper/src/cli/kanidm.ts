// `kiwi-id kanidm …` (Kanidm's own CLI against the local Kanidm) and
// `kiwi-id reset-link NAME` (a credential-reset link a person can open).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { execa } from 'execa';
import type { KiwiConfig } from '../config/config.js';

/**
 * Where Kanidm's CLI keeps this instance's login tokens. By default it keeps
 * one file per user for every Kanidm it ever logged in to, and once it holds
 * `idm_admin@` of two domains (another Kiwi ID, a test, a second domain) a
 * bare `-D idm_admin` stops and asks which one, which fails without a
 * terminal. One file per Kiwi ID config (~/.cache/kiwi-id/kanidm-tokens/…,
 * 0700 directory; Kanidm writes the file 0600) keeps the instances apart. An
 * operator's own KANIDM_TOKEN_CACHE_PATH wins; a user without a writable
 * cache directory gets Kanidm's default (undefined here).
 */
export function tokenCachePath(cfg: Pick<KiwiConfig, 'config_file'>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.KANIDM_TOKEN_CACHE_PATH) return env.KANIDM_TOKEN_CACHE_PATH;
  const dir = join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'kiwi-id', 'kanidm-tokens');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return undefined;
  }
  return join(dir, createHash('sha256').update(resolve(cfg.config_file)).digest('hex').slice(0, 16));
}

/** The environment that points Kanidm's CLI at the local Kanidm, trusting only its CA. */
function cliEnv(cfg: KiwiConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KANIDM_URL: cfg.upstream_addr, KANIDM_CA_PATH: cfg.upstream_ca };
  const tokens = tokenCachePath(cfg);
  if (tokens) env.KANIDM_TOKEN_CACHE_PATH = tokens;
  return env;
}

function requireCli(cfg: KiwiConfig): void {
  if (!existsSync(cfg.upstream_cli)) {
    process.stderr.write(`kiwi-id: upstream CLI ${cfg.upstream_cli} not found (upstream_cli in ${cfg.config_file})\n`);
    process.exit(127);
  }
}

/** Pulls the token and expiry out of `kanidm person credential create-reset-token` output. */
export function parseResetToken(output: string): { token: string; expires?: string } | undefined {
  const token = /[?&]token=([A-Za-z0-9-]+)/.exec(output)?.[1];
  if (!token) return undefined;
  const expires = /expire[sd]? at:?\s*(\S+)/i.exec(output)?.[1];
  return { token, expires };
}

export function registerKanidmCommands(program: Command, loadConfig: () => KiwiConfig): void {
  program
    .command('kanidm')
    .description('run the upstream kanidm CLI against the local Kanidm (args passed through)')
    .allowUnknownOption(true)
    .helpOption(false)
    .argument('[args...]')
    .action((args: string[]) => {
      const cfg = loadConfig();
      requireCli(cfg);
      // The CLI reads its server URL and CA from these variables, so the
      // operator never has to type them; stdin/tty are inherited.
      const child = spawn(cfg.upstream_cli, args, { stdio: 'inherit', env: cliEnv(cfg) });
      child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
      child.on('error', (err) => {
        process.stderr.write(`kiwi-id: cannot run ${cfg.upstream_cli}: ${err.message}\n`);
        process.exit(126);
      });
    });

  // Kanidm's CLI builds the link from the URL it talks to, which is Kanidm's
  // loopback address; the person needs the public origin (the issuer), where
  // the wrapper serves Kanidm's pages and WebAuthn's RP id matches.
  program
    .command('reset-link')
    .description('create a credential-reset link for a person (password, TOTP, passkey) on the public origin')
    .argument('<name>', 'the person (Kanidm account name)')
    .option('--ttl <seconds>', 'how long the link works (Kanidm default: 3600)')
    .option('-D, --admin <name>', 'the logged-in Kanidm admin to act as (see `kiwi-id kanidm login -D idm_admin`)')
    .action(async (name: string, opts: { ttl?: string; admin?: string }) => {
      const cfg = loadConfig();
      requireCli(cfg);
      if (opts.ttl !== undefined && !/^\d+$/.test(opts.ttl)) {
        process.stderr.write(`kiwi-id: reset-link: --ttl must be a number of seconds, got ${JSON.stringify(opts.ttl)}\n`);
        process.exit(2);
      }
      const args = ['person', 'credential', 'create-reset-token', name, ...(opts.ttl ? [opts.ttl] : []), ...(opts.admin ? ['-D', opts.admin] : [])];
      const r = await execa(cfg.upstream_cli, args, { reject: false, env: cliEnv(cfg), stdin: 'ignore' });
      const parsed = r.exitCode === 0 ? parseResetToken(r.stdout) : undefined;
      if (!parsed) {
        const why = (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' ') || `exit ${r.exitCode}`;
        process.stderr.write(`kiwi-id: reset-link: Kanidm did not create a reset token for ${JSON.stringify(name)}: ${why}\n`);
        process.exit(1);
      }
      process.stdout.write(`${cfg.issuer}/ui/reset?token=${parsed.token}\n`);
      if (parsed.expires) process.stdout.write(`expires at ${parsed.expires}\n`);
    });
}
