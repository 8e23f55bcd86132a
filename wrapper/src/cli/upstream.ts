// `kiwi-id upstream verify [DIR]` and `kiwi-id upstream install DIR`: the
// pinned Kanidm binaries checked (and put in place) by the same pins the
// wrapper enforces when it starts Kanidm.
import path from 'node:path';
import type { Command } from 'commander';
import type { KiwiConfig } from '../config/config.js';
import { installUpstream, UpstreamRefused, verifyUpstreamDir } from '../upstream/install.js';

function targets(cfg: KiwiConfig): Record<string, string> {
  return { 'bin/kanidmd': cfg.upstream_bin, 'bin/kanidm': cfg.upstream_cli };
}

function refuse(err: unknown, what: string): never {
  if (!(err instanceof UpstreamRefused)) throw err;
  for (const line of err.message.split('\n')) process.stderr.write(`kiwi-id: upstream ${what}: ${line}\n`);
  process.exit(1);
}

export function registerUpstreamCommands(program: Command, loadConfig: () => KiwiConfig): void {
  const upstream = program.command('upstream').description('the pinned Kanidm binaries: verify them, install verified ones');

  upstream
    .command('verify')
    .description('check the installed Kanidm binaries (or those in DIR/bin) against compatibility.toml')
    .argument('[dir]', 'a directory with bin/kanidmd and bin/kanidm (default: the installed ones)')
    .action(async (dir: string | undefined) => {
      const cfg = loadConfig();
      const from = dir ?? path.dirname(path.dirname(cfg.upstream_bin));
      try {
        for (const c of await verifyUpstreamDir(from, cfg.compatibility_file)) process.stdout.write(`verified ${c.file} ${c.sha256}\n`);
      } catch (err) {
        refuse(err, 'verify');
      }
    });

  upstream
    .command('install')
    .description('replace the installed Kanidm binaries with those in DIR/bin, only if every one matches its pin')
    .argument('<dir>', 'a directory with bin/kanidmd and bin/kanidm')
    .action(async (dir: string) => {
      const cfg = loadConfig();
      try {
        const written = await installUpstream(dir, { targets: targets(cfg), compatibilityFile: cfg.compatibility_file });
        if (!written.length) return void process.stdout.write('kiwi-id: upstream install: the installed binaries are already these; nothing to do\n');
        for (const t of written) process.stdout.write(`installed ${t}\n`);
        process.stdout.write('restart kiwi-id (systemctl restart kiwi-id) to run them\n');
      } catch (err) {
        refuse(err, `install: refused, nothing was changed (the running Kanidm keeps serving)`);
      }
    });
}
