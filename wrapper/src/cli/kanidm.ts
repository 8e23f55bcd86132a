// `kiwi-id kanidm …` (Kanidm's own CLI against the local Kanidm) and
// `kiwi-id reset-link NAME` (a credential-reset link a person can open).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { execa } from 'execa';
import type { KiwiConfig } from '../config/config.js';

/** The environment that points Kanidm's CLI at the local Kanidm, trusting only its CA. */
function cliEnv(cfg: KiwiConfig): NodeJS.ProcessEnv {
  return { ...process.env, KANIDM_URL: cfg.upstream_addr, KANIDM_CA_PATH: cfg.upstream_ca };
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
