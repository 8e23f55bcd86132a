// kiwi-id command line.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerClientCommands } from './client.js';
import { registerClusterCommands } from './cluster.js';
import { registerSessionCommands } from './session.js';
import { StoreRegisteredClients } from '../clients/registered-clients.js';
import { registerFederationCommands } from './federation.js';
import { registerKanidmCommands } from './kanidm.js';
import { registerUpstreamCommands } from './upstream.js';
import { ClientsFileError } from '../clients/client-errors.js';
import { loadClients } from '../clients/clients-file.js';
import { ConfigError, loadConfig, type KiwiConfig, type ValidateOptions } from '../config/config.js';
import { devConfigToml, initUpstream, initWrapper, UpstreamNotInstalled, type Report } from '../lifecycle/first-boot.js';
import { startWrapper } from '../lifecycle/run.js';
import { handleSignals } from '../lifecycle/running.js';
import { SqliteStateStore, STATE_DB_FILE } from '../state/store.js';
import { readPin } from '../upstream/pin.js';

const DEFAULT_CONFIG = '/etc/kiwi/config.toml';
const here = dirname(fileURLToPath(import.meta.url));
// From wrapper/{src,dist}/cli: the repository. From the artifact (/opt/kiwi/lib/kiwi-id.mjs): /opt/kiwi.
const repoRoot = join(here, '..', '..', '..');
const packageRoot = existsSync(join(repoRoot, 'package.json')) ? repoRoot : join(here, '..');

function configPath(opt?: string): string {
  return opt ?? process.env.KIWI_CONFIG ?? DEFAULT_CONFIG;
}

/** Loads the config or exits 2 with the one-line error (key and file named). */
function loadOrExit(path: string, opts?: ValidateOptions): KiwiConfig {
  try {
    return loadConfig(path, opts);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kiwi-id: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

function wrapperVersion(): string {
  const pkg = join(packageRoot, 'package.json');
  if (existsSync(pkg)) return JSON.parse(readFileSync(pkg, 'utf8')).version;
  return readFileSync(join(packageRoot, 'version'), 'utf8').trim(); // the artifact's /opt/kiwi/version
}

export function buildCli(): Command {
  const program = new Command('kiwi-id')
    .description('Kiwi ID: KiwiStack identity provider in front of an unmodified Kanidm')
    .option('-c, --config <file>', `wrapper config (default $KIWI_CONFIG or ${DEFAULT_CONFIG})`);

  program
    .command('check-config')
    .description('validate the config, the files it names and the clients file, then exit')
    .action(() => {
      const file = configPath(program.opts().config);
      const cfg = loadOrExit(file);
      try {
        const clients = loadClients(cfg.clients.file);
        process.stdout.write(`kiwi-id: config OK: ${cfg.config_file} (${clients.length} clients in ${cfg.clients.file})\n`);
      } catch (err) {
        if (!(err instanceof ClientsFileError)) throw err;
        process.stderr.write(`kiwi-id: ${err.message}\n`);
        process.exit(2);
      }
    });

  program
    .command('init')
    .description('first boot: create keys, certificates and configs that are missing (never overwrites)')
    .option('--dev <dir>', 'also write a development config.toml into <dir> and use it')
    .action(async (opts: { dev?: string }) => {
      let file = configPath(program.opts().config);
      if (opts.dev) {
        const abs = resolve(opts.dev);
        mkdirSync(abs, { recursive: true, mode: 0o700 });
        file = join(abs, 'config.toml');
        if (!existsSync(file)) writeFileSync(file, devConfigToml(abs, join(packageRoot, 'compatibility.toml')), { mode: 0o644 });
      }
      // The files the config names are what init creates, so they are not required yet.
      const cfg = loadOrExit(file, { checkFiles: false });
      const print = (r: Report) => r.forEach((s) => process.stdout.write(`${s.result.padEnd(8)}${s.step}: ${s.path}\n`));
      try {
        print(await initWrapper(cfg));
        print(await initUpstream(cfg));
      } catch (err) {
        if (err instanceof UpstreamNotInstalled) print(err.report);
        process.stderr.write(`kiwi-id: init: ${(err as Error).message}\n`);
        process.exit(err instanceof UpstreamNotInstalled ? 3 : 1);
      }
    });

  program
    .command('run')
    .description('supervise Kanidm and serve the public listener (proxy + issuer) until SIGTERM')
    .action(async () => {
      const cfg = loadOrExit(configPath(program.opts().config));
      try {
        handleSignals(await startWrapper(cfg));
      } catch (err) {
        // Startup problems (pin mismatch, port in use, unreadable CA) are
        // operator errors: one line, no stack.
        process.stderr.write(`kiwi-id: cannot start: ${(err as Error).message}\n`);
        process.exit(1);
      }
    });

  program
    .command('version')
    .description('print wrapper and pinned upstream versions')
    .action(() => {
      const compat = [process.env.KIWI_COMPATIBILITY_FILE, join(packageRoot, 'compatibility.toml')]
        .filter((p): p is string => !!p)
        .find((p) => existsSync(p));
      const pin = compat ? readPin(compat) : undefined;
      process.stdout.write(
        JSON.stringify({ wrapper: wrapperVersion(), upstream: pin ? `${pin.name} ${pin.version}` : 'unknown' }) + '\n',
      );
    });

  program
    .command('state')
    .description('live issuer state per kind (sessions, grants, refresh tokens, ...) as JSON')
    .argument('<action>', 'stats')
    .action(async (action: string) => {
      if (action !== 'stats') {
        process.stderr.write(`kiwi-id: state: unknown action ${JSON.stringify(action)} (expected: stats)\n`);
        process.exit(2);
      }
      const cfg = loadOrExit(configPath(program.opts().config), { checkFiles: false });
      const store = new SqliteStateStore({ dataDir: cfg.data_dir });
      try {
        process.stdout.write(JSON.stringify(await store.countLive()) + '\n');
      } finally {
        await store.close();
      }
    });

  registerClusterCommands(program, (opts) => loadOrExit(configPath(program.opts().config), opts));
  // The state store of the issuer; never created here (a root-owned new file would lock the service out).
  const openStore = () => {
    const dataDir = loadOrExit(configPath(program.opts().config), { checkFiles: false }).data_dir;
    if (!existsSync(join(dataDir, STATE_DB_FILE))) throw new Error(`no issuer state yet (${join(dataDir, STATE_DB_FILE)} does not exist)`);
    return new SqliteStateStore({ dataDir });
  };
  registerClientCommands(program, () => loadOrExit(configPath(program.opts().config)).clients.file, undefined, () => {
    const dataDir = loadOrExit(configPath(program.opts().config), { checkFiles: false }).data_dir;
    if (!existsSync(join(dataDir, STATE_DB_FILE))) return undefined; // no issuer state yet: no registered clients
    const store = new SqliteStateStore({ dataDir });
    return { registered: new StoreRegisteredClients(store), close: () => store.close() };
  });
  registerSessionCommands(program, openStore);
  registerFederationCommands(program, { config: () => loadOrExit(configPath(program.opts().config), { checkFiles: false }) });
  registerKanidmCommands(program, () => loadOrExit(configPath(program.opts().config)));
  registerUpstreamCommands(program, () => loadOrExit(configPath(program.opts().config)));

  return program;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildCli().parseAsync(process.argv);
}
