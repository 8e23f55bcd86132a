// `kiwi-id client ...`: manage the static clients file. Plaintext secrets are printed once
// (add, rotate-secret) and never stored or shown again; hashes are never printed.
// Errors: one line on stderr; exit 2 for bad input (including an invalid clients file),
// exit 1 for an unknown client_id.

import { Command, CommanderError, Option } from 'commander';
import {
  addClient,
  ClientError,
  ClientsFileError,
  findClient,
  GRANT_TYPES,
  loadClients,
  removeClient,
  rotateSecret,
  updateClient,
  updateClients,
  type ClientChanges,
  UnknownClientError,
  type ClientInput,
  type ClientRecord,
  type GrantType,
} from '../clients/clients-file.js';

const EXIT_UNKNOWN = 1;
const EXIT_BAD_INPUT = 2;

/** Commander's own argument/option errors, which are bad input (exit 2, not commander's 1). */
const USAGE_ERRORS = new Set([
  'commander.missingArgument',
  'commander.optionMissingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.unknownOption',
  'commander.unknownCommand',
  'commander.excessArguments',
  'commander.invalidArgument',
  'commander.conflictingOption',
]);

type ExitCallback = (err: CommanderError) => void;

/**
 * Installs an exit hook on `cmd` that turns commander usage errors into exit code 2 and then
 * defers to whatever the root program does (its exitOverride callback if any, else exit).
 * Commander keeps that callback in a private field; reading it lazily means a later
 * `program.exitOverride()` (as tests do) is still honoured.
 */
function mapUsageExit(cmd: Command, onExit: ExitCallback): void {
  cmd.exitOverride((err) => {
    const mapped =
      err.exitCode !== 0 && USAGE_ERRORS.has(err.code)
        ? new CommanderError(EXIT_BAD_INPUT, err.code, err.message)
        : err;
    onExit(mapped);
    process.exit(mapped.exitCode); // in case onExit returned
  });
}

function out(cmd: Command, text: string): void {
  const write = cmd.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s));
  write(text);
}

/** Runs an action body, reporting known failures as one line with the right exit code. */
function guarded(cmd: Command, body: () => void): void {
  let failure: { message: string; exitCode: number; code: string } | undefined;
  try {
    body();
  } catch (e) {
    if (e instanceof UnknownClientError) {
      failure = { message: e.message, exitCode: EXIT_UNKNOWN, code: 'kiwi.unknownClient' };
    } else if (e instanceof ClientError || e instanceof ClientsFileError) {
      failure = { message: e.message, exitCode: EXIT_BAD_INPUT, code: 'kiwi.invalidClient' };
    } else if (e instanceof CommanderError) {
      throw e;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      failure = { message: msg.split('\n')[0]!, exitCode: 1, code: 'kiwi.error' };
    }
  }
  if (failure) cmd.error(`kiwi-id: ${failure.message}`, { exitCode: failure.exitCode, code: failure.code });
}

/** The record as shown to operators: no hash, only whether a secret exists. */
export function publicView(c: ClientRecord): Record<string, unknown> {
  const { client_secret_hash, ...rest } = c;
  return { ...rest, has_secret: client_secret_hash !== undefined };
}

function formatList(clients: readonly ClientRecord[]): string {
  const rows = clients.map((c) => [
    c.client_id,
    c.client_name ?? '-',
    c.token_endpoint_auth_method,
    c.redirect_uris.length ? c.redirect_uris.join(',') : '-',
  ]);
  const header = ['CLIENT_ID', 'NAME', 'AUTH_METHOD', 'REDIRECT_URIS'];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function secretMessage(id: string, secret: string): string {
  return (
    `client_id: ${id}\n` +
    `client_secret: ${secret}\n` +
    'This secret is shown only once and cannot be shown again; store it now ' +
    `(a lost secret can only be replaced: kiwi-id client rotate-secret ${id}).\n`
  );
}

interface UpdateOptions {
  name?: string;
  redirectUri?: string[];
  postLogoutRedirectUri?: string[];
  allowedGroup?: string[];
  clearAllowedGroups?: boolean;
}

interface AddOptions {
  redirectUri?: string[];
  name?: string;
  public?: boolean;
  grant?: GrantType[];
  allowedGroup?: string[];
  postLogoutRedirectUri?: string[];
}

/**
 * `onExit` receives every exit (usage errors already mapped to exit 2); the
 * default ends the process. Tests pass one that throws, to stay in-process.
 */
export function registerClientCommands(
  program: Command,
  resolveClientsFile: () => string,
  onExit: ExitCallback = (err) => process.exit(err.exitCode),
): Command {
  const client = program.command('client').description('manage registered clients (relying parties) in the clients file');
  mapUsageExit(client, onExit);

  const sub = (name: string, description: string): Command => {
    const c = client.command(name).description(description);
    mapUsageExit(c, onExit);
    return c;
  };

  sub('add', 'register a client; prints its secret once (confidential clients)')
    .argument('<id>', 'client_id, e.g. kiwi-mail')
    .addOption(new Option('--redirect-uri <uri...>', 'exact redirect URI(s)'))
    .option('--name <name>', 'display name (client_name)')
    .option('--public', 'public client without secret (token_endpoint_auth_method "none"; PKCE required)')
    .addOption(new Option('--grant <type...>', 'grant types (default authorization_code refresh_token)').choices(GRANT_TYPES))
    .option('--allowed-group <group...>', 'only members of these groups may get tokens')
    .option('--post-logout-redirect-uri <uri...>', 'exact post-logout redirect URI(s)')
    .action((id: string, opts: AddOptions, cmd: Command) =>
      guarded(cmd, () => {
        const file = resolveClientsFile();
        const input: ClientInput = {
          client_id: id,
          ...(opts.name !== undefined && { client_name: opts.name }),
          ...(opts.redirectUri !== undefined && { redirect_uris: opts.redirectUri }),
          ...(opts.postLogoutRedirectUri !== undefined && { post_logout_redirect_uris: opts.postLogoutRedirectUri }),
          ...(opts.grant !== undefined && { grant_types: opts.grant }),
          ...(opts.allowedGroup !== undefined && { allowed_groups: opts.allowedGroup }),
          ...(opts.public && { token_endpoint_auth_method: 'none' as const }),
        };
        const grants = opts.grant ?? [];
        if (opts.grant !== undefined && !grants.includes('refresh_token')) {
          // The default scopes include offline_access, which only makes sense with refresh tokens.
          input.scopes = ['openid', 'profile', 'email', 'groups'];
        }
        const secret = updateClients(file, (list) => {
          const r = addClient(list, input);
          return { clients: r.clients, result: r.secret };
        });
        if (secret !== undefined) {
          out(cmd, `added client ${id} to ${file}\n` + secretMessage(id, secret));
        } else {
          out(cmd, `added public client ${id} to ${file} (no secret; PKCE is required)\n`);
        }
      }),
    );

  sub('list', 'list registered clients (never shows secrets or hashes)').action((_opts: unknown, cmd: Command) =>
    guarded(cmd, () => {
      const file = resolveClientsFile();
      const clients = loadClients(file);
      out(cmd, clients.length ? formatList(clients) : `no clients registered in ${file}\n`);
    }),
  );

  sub('show', 'print one client as JSON (without the secret hash)')
    .argument('<id>', 'client_id')
    .action((id: string, _opts: unknown, cmd: Command) =>
      guarded(cmd, () => {
        const c = findClient(loadClients(resolveClientsFile()), id);
        if (!c) throw new UnknownClientError(id);
        out(cmd, JSON.stringify(publicView(c), null, 2) + '\n');
      }),
    );

  sub('remove', 'unregister a client')
    .argument('<id>', 'client_id')
    .action((id: string, _opts: unknown, cmd: Command) =>
      guarded(cmd, () => {
        const file = resolveClientsFile();
        updateClients(file, (list) => ({ clients: removeClient(list, id), result: undefined }));
        out(cmd, `removed client ${id} from ${file}\n`);
      }),
    );

  sub('update', 'change a client\'s name, redirect URIs or allowed groups (its secret keeps working)')
    .argument('<id>', 'client_id')
    .option('--name <name>', 'display name (client_name)')
    .option('--redirect-uri <uri...>', 'replace the exact redirect URI(s)')
    .option('--post-logout-redirect-uri <uri...>', 'replace the post-logout redirect URI(s)')
    .option('--allowed-group <group...>', 'replace the groups whose members may get tokens')
    .option('--clear-allowed-groups', 'remove the group restriction')
    .action((id: string, opts: UpdateOptions, cmd: Command) =>
      guarded(cmd, () => {
        if (opts.allowedGroup && opts.clearAllowedGroups) {
          throw new ClientError(id, 'allowed_groups', '--allowed-group and --clear-allowed-groups contradict each other');
        }
        const changes: ClientChanges = {
          ...(opts.name !== undefined && { client_name: opts.name }),
          ...(opts.redirectUri !== undefined && { redirect_uris: opts.redirectUri }),
          ...(opts.postLogoutRedirectUri !== undefined && { post_logout_redirect_uris: opts.postLogoutRedirectUri }),
          ...(opts.allowedGroup !== undefined && { allowed_groups: opts.allowedGroup }),
          ...(opts.clearAllowedGroups && { allowed_groups: [] }),
        };
        if (Object.keys(changes).length === 0) throw new ClientError(id, undefined, 'nothing to change (see kiwi-id client update --help)');
        const file = resolveClientsFile();
        const updated = updateClients(file, (list) => {
          const clients = updateClient(list, id, changes);
          return { clients, result: findClient(clients, id)! };
        });
        out(cmd, `updated client ${id} in ${file}\n` + JSON.stringify(publicView(updated), null, 2) + '\n');
      }),
    );

  sub('rotate-secret', 'replace a confidential client\'s secret; prints the new one once')
    .argument('<id>', 'client_id')
    .action((id: string, _opts: unknown, cmd: Command) =>
      guarded(cmd, () => {
        const file = resolveClientsFile();
        const secret = updateClients(file, (list) => {
          const r = rotateSecret(list, id);
          return { clients: r.clients, result: r.secret };
        });
        out(cmd, `rotated secret of client ${id} in ${file}; the old secret no longer works\n` + secretMessage(id, secret));
      }),
    );

  return client;
}
