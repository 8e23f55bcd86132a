// `kiwi-id federation ...`: the links between upstream identities and Kanidm
// persons (link, unlink, list) and the public key an upstream registers for
// private_key_jwt (jwks). Links go into the state store the running wrapper
// uses; the person is looked up in Kanidm, so a link always names a person
// that exists. Errors: one line; exit 2 for bad input, 1 for anything else.
import { Command, CommanderError } from 'commander';
import type { KiwiConfig } from '../config/config.js';
import type { UpstreamIdp } from '../config/federation.js';
import { loadClientAssertionKey } from '../federation/client-key.js';
import type { PersonDirectory } from '../federation/directory.js';
import { kanidmDirectory } from '../federation/index.js';
import { undiciAgent, upstreamTls } from '../upstream/tls.js';
import { LinkConflictError, LinkStore, type FederatedLink } from '../federation/links.js';
import { SqliteStateStore } from '../state/store.js';

const EXIT_FAILURE = 1;
const EXIT_BAD_INPUT = 2;

class CliError extends Error {
  constructor(message: string, readonly exitCode = EXIT_BAD_INPUT) {
    super(message);
  }
}

export interface FederationCliDeps {
  config: () => KiwiConfig;
  /** The read-only directory; default: the local Kanidm over loopback, its CA pinned (tests pass their own). */
  directory?: (cfg: KiwiConfig) => PersonDirectory;
  onExit?: (err: CommanderError) => void;
}

/** An upstream by configured id, or a trusted issuer by its URL: the issuer links are keyed by. */
function resolveIdp(cfg: KiwiConfig, name: string): { issuer: string; idp: string; upstream?: UpstreamIdp } {
  const upstream = cfg.federation.upstream_idps.find((i) => i.id === name);
  if (upstream) return { issuer: upstream.issuer, idp: upstream.id, upstream };
  if (cfg.federation.trusted_issuers.includes(name)) return { issuer: name, idp: name };
  const known = [...cfg.federation.upstream_idps.map((i) => i.id), ...cfg.federation.trusted_issuers];
  throw new CliError(`unknown IdP ${JSON.stringify(name)} (configured: ${known.length ? known.join(', ') : 'none; see [federation] in ' + cfg.config_file})`);
}

const when = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

function table(links: readonly FederatedLink[]): string {
  const header = ['IDP', 'UPSTREAM_SUB', 'PERSON', 'HOW', 'CREATED', 'LAST_USED', 'NODE'];
  const rows = links.map((l) => [l.idp, l.upstream_sub, l.person_name ? `${l.person_name} (${l.person})` : l.person, l.how, when(l.created_at), when(l.last_used_at), l.node]);
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function localKanidm(cfg: KiwiConfig): PersonDirectory {
  const agent = undiciAgent(upstreamTls(cfg.upstream_addr, cfg.upstream_ca));
  const dir = kanidmDirectory(cfg, agent);
  // One lookup per command: the connection must not keep the process alive afterwards.
  return {
    person: (id) => dir.person(id).finally(() => agent.close()),
    personsWithEmail: (m) => dir.personsWithEmail(m).finally(() => agent.close()),
  };
}

export function registerFederationCommands(program: Command, d: FederationCliDeps): Command {
  const directory = d.directory ?? localKanidm;
  const onExit = d.onExit ?? ((err: CommanderError) => process.exit(err.exitCode));
  const fed = program.command('federation').description('links between upstream IdP identities and Kanidm persons');
  const exitHook = (c: Command) =>
    c.exitOverride((err) => {
      // Commander's own usage errors are bad input too.
      const mapped = err.exitCode !== 0 && err.code.startsWith('commander.') && err.code !== 'commander.help' && err.code !== 'commander.helpDisplayed' && err.code !== 'commander.version'
        ? new CommanderError(EXIT_BAD_INPUT, err.code, err.message)
        : err;
      onExit(mapped);
      process.exit(mapped.exitCode);
    });
  exitHook(fed);

  const write = (cmd: Command, s: string) => (cmd.configureOutput().writeOut ?? ((x: string) => process.stdout.write(x)))(s);

  /** Runs `body` with the config and the link store; known failures become one line and an exit code. */
  const action = (body: (cmd: Command, cfg: KiwiConfig, links: LinkStore, ...args: string[]) => Promise<void>) =>
    async (...argv: unknown[]) => {
      const cmd = argv[argv.length - 1] as Command;
      const args = argv.slice(0, -2).map(String);
      let store: SqliteStateStore | undefined;
      try {
        const cfg = d.config();
        store = new SqliteStateStore({ dataDir: cfg.data_dir });
        await body(cmd, cfg, new LinkStore(store), ...args);
      } catch (e) {
        if (e instanceof CommanderError) throw e;
        const code = e instanceof CliError ? e.exitCode : EXIT_FAILURE;
        const msg = (e as Error).message.split('\n')[0]!;
        cmd.error(`kiwi-id: federation: ${msg}`, { exitCode: code, code: 'kiwi.federation' });
      } finally {
        await store?.close();
      }
    };

  exitHook(fed.command('link')
    .description('link an upstream identity to a Kanidm person (admin); it then signs in as that person')
    .argument('<idp>', 'upstream IdP id, or a trusted issuer URL (for JWT-bearer assertions)')
    .argument('<upstream-sub>', 'the subject the upstream asserts (its `sub`, or subject_claim for plain OAuth2)')
    .argument('<person>', 'Kanidm person: name, SPN or UUID')
    .action(action(async (cmd, cfg, links, idpName, sub, personRef) => {
      const { issuer, idp } = resolveIdp(cfg, idpName!);
      if (!sub) throw new CliError('upstream-sub must not be empty');
      const person = await directory(cfg).person(personRef!);
      if (!person) throw new CliError(`no Kanidm person ${JSON.stringify(personRef)}`, EXIT_FAILURE);
      try {
        const { link, created } = await links.link({ issuer, idp, upstream_sub: sub, person: person.uuid, person_name: person.name, how: 'admin' });
        write(cmd, created
          ? `linked ${idp} ${JSON.stringify(sub)} to ${person.name} (${person.uuid})\n`
          : `already linked: ${idp} ${JSON.stringify(sub)} → ${link.person_name ?? link.person}\n`);
      } catch (e) {
        if (e instanceof LinkConflictError) throw new CliError(`${e.message}; unlink it first: kiwi-id federation unlink ${idp} ${sub}`, EXIT_FAILURE);
        throw e;
      }
    })));

  exitHook(fed.command('unlink')
    .description('remove the link of an upstream identity (its next sign-in is refused until linked again)')
    .argument('<idp>', 'upstream IdP id or trusted issuer URL')
    .argument('<upstream-sub>', 'the upstream subject')
    .action(action(async (cmd, cfg, links, idpName, sub) => {
      const { issuer, idp } = resolveIdp(cfg, idpName!);
      const gone = await links.unlink(issuer, sub!);
      if (!gone) throw new CliError(`no link for ${idp} ${JSON.stringify(sub)}`, EXIT_FAILURE);
      write(cmd, `unlinked ${idp} ${JSON.stringify(sub)} from ${gone.person_name ?? gone.person}\n`);
    })));

  exitHook(fed.command('list')
    .description('list links with when they were made and last used')
    .option('--idp <idp>', 'only this upstream IdP (id or trusted issuer URL)')
    .option('--json', 'JSON lines instead of a table')
    .action(async (opts: { idp?: string; json?: boolean }, cmd: Command) => action(async (c, cfg, links) => {
      const only = opts.idp === undefined ? undefined : resolveIdp(cfg, opts.idp).issuer;
      const all = (await links.list()).filter((l) => only === undefined || l.issuer === only);
      if (opts.json) return write(c, all.map((l) => JSON.stringify(l) + '\n').join(''));
      write(c, all.length ? table(all) : 'no links\n');
    })(opts, cmd)));

  exitHook(fed.command('jwks')
    .description('print the public JWKS of an upstream\'s private_key_path (register it at the upstream for private_key_jwt)')
    .argument('<idp>', 'upstream IdP id')
    .action(action(async (cmd, cfg, _links, idpName) => {
      const { upstream } = resolveIdp(cfg, idpName!);
      if (!upstream?.private_key_path) throw new CliError(`${idpName} does not use private_key_jwt`);
      const key = await loadClientAssertionKey(upstream.private_key_path);
      write(cmd, JSON.stringify({ keys: [key.publicJwk] }, null, 2) + '\n');
    })));

  return fed;
}
