// `kiwi-id client ...`: manage the static clients file. Plaintext secrets are printed once
// (add, rotate-secret) and never stored or shown again; hashes are never printed.
// Clients registered through /oauth2/register (state store) are listed beside the static
// ones and can be shown and removed here; they change only through their registration API.
// Errors: one line on stderr; exit 2 for bad input (including an invalid clients file),
// exit 1 for an unknown client_id.

import { Command, CommanderError, Option } from 'commander';
import { ClientError, ClientsFileError, UnknownClientError } from '../clients/client-errors.js';
import { addClient, findClient, removeClient, rotateSecret, updateClient, type ClientChanges } from '../clients/client-list.js';
import { DEFAULT_SCOPES, DEVICE_CODE_GRANT, GRANT_TYPES, type ClientInput, type ClientRecord, type GrantType } from '../clients/client-record.js';
import { loadClients, updateClients } from '../clients/clients-file.js';
import type { RegisteredClient, RegisteredClients } from '../clients/registered-clients.js';

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

type Failure = { message: string; exitCode: number; code: string };

/** Runs an action body, reporting known failures as one line with the right exit code. */
function guarded(cmd: Command, body: () => void): void {
  let failure: Failure | undefined;
  try {
    body();
  } catch (e) {
    failure = failureOf(e);
  }
  if (failure) cmd.error(`kiwi-id: ${failure.message}`, { exitCode: failure.exitCode, code: failure.code });
}

/** guarded() for actions that read the state store. */
async function guardedAsync(cmd: Command, body: () => Promise<void>): Promise<void> {
  let failure: Failure | undefined;
  try {
    await body();
  } catch (e) {
    failure = failureOf(e);
  }
  if (failure) cmd.error(`kiwi-id: ${failure.message}`, { exitCode: failure.exitCode, code: failure.code });
}

function failureOf(e: unknown): Failure {
  if (e instanceof UnknownClientError) return { message: e.message, exitCode: EXIT_UNKNOWN, code: 'kiwi.unknownClient' };
  if (e instanceof ClientError || e instanceof ClientsFileError) return { message: e.message, exitCode: EXIT_BAD_INPUT, code: 'kiwi.invalidClient' };
  if (e instanceof CommanderError) throw e;
  const msg = e instanceof Error ? e.message : String(e);
  return { message: msg.split('\n')[0]!, exitCode: 1, code: 'kiwi.error' };
}

/** The record as shown to operators: no hash, only whether a secret exists. */
export function publicView(c: ClientRecord): Record<string, unknown> {
  const { client_secret_hash, ...rest } = c;
  return { ...rest, has_secret: client_secret_hash !== undefined };
}

/** A registered client as shown to operators (never its secret hash). */
export function registeredView(c: RegisteredClient): Record<string, unknown> {
  const { client_secret, registration_access_token: _rat, ...rest } = c.metadata as Record<string, unknown>;
  return { ...rest, source: 'registered', registered_on: c.origin, has_secret: typeof client_secret === 'string' };
}

function formatList(clients: readonly ClientRecord[], registered: readonly RegisteredClient[]): string {
  const uris = (u: unknown) => (Array.isArray(u) && u.length ? u.join(',') : '-');
  const rows = [
    ...clients.map((c) => [c.client_id, c.client_name ?? '-', c.token_endpoint_auth_method, uris(c.redirect_uris), 'static']),
    ...registered.map((r) => {
      const m = r.metadata as Record<string, unknown>;
      return [r.client_id, String(m.client_name ?? '-'), String(m.token_endpoint_auth_method ?? 'client_secret_basic'), uris(m.redirect_uris), `registered@${r.origin}`];
    }),
  ];
  const header = ['CLIENT_ID', 'NAME', 'AUTH_METHOD', 'REDIRECT_URIS', 'SOURCE'];
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
  backchannelLogoutUri?: string;
  clearBackchannelLogoutUri?: boolean;
  requirePar?: boolean;
  dpop?: boolean;
}

interface AddOptions {
  redirectUri?: string[];
  name?: string;
  public?: boolean;
  grant?: string[];
  allowedGroup?: string[];
  postLogoutRedirectUri?: string[];
  backchannelLogoutUri?: string;
  requirePar?: boolean;
  dpop?: boolean;
}

/** `--grant device_code` is short for the RFC 8628 grant type URN. */
const GRANT_CHOICES = [...GRANT_TYPES, 'device_code'];
const grantType = (g: string): GrantType => (g === 'device_code' ? DEVICE_CODE_GRANT : g) as GrantType;

/** Registered clients (state store), when the caller can reach the store; closed after each command. */
export type OpenRegistered = () => { registered: RegisteredClients; close: () => Promise<void> } | undefined;

async function withRegistered<T>(open: OpenRegistered | undefined, use: (r: RegisteredClients | undefined) => Promise<T>): Promise<T> {
  const opened = open?.();
  if (!opened) return use(undefined);
  try {
    return await use(opened.registered);
  } finally {
    await opened.close();
  }
}

/** A registered client changes only through its registration (RFC 7592); say so instead of "unknown client". */
async function refuseRegistered(open: OpenRegistered | undefined, file: string, id: string): Promise<void> {
  if (findClient(loadClients(file), id)) return;
  if (await withRegistered(open, async (r) => r?.find(id))) {
    throw new ClientError(id, undefined, 'was registered through /oauth2/register: it changes through its registration access token (RFC 7592); kiwi-id client remove deletes it');
  }
}

/** What `client add`'s options ask for, as the client list's input. */
function addInput(id: string, opts: AddOptions): ClientInput {
  const input: ClientInput = {
    client_id: id,
    ...(opts.name !== undefined && { client_name: opts.name }),
    ...(opts.redirectUri !== undefined && { redirect_uris: opts.redirectUri }),
    ...(opts.postLogoutRedirectUri !== undefined && { post_logout_redirect_uris: opts.postLogoutRedirectUri }),
    ...(opts.grant !== undefined && { grant_types: opts.grant.map(grantType) }),
    ...(opts.allowedGroup !== undefined && { allowed_groups: opts.allowedGroup }),
    ...(opts.public && { token_endpoint_auth_method: 'none' as const }),
    ...(opts.backchannelLogoutUri !== undefined && { backchannel_logout_uri: opts.backchannelLogoutUri }),
    ...(opts.requirePar && { require_pushed_authorization_requests: true }),
    ...(opts.dpop && { dpop_bound_access_tokens: true }),
  };
  if (input.grant_types && !input.grant_types.includes('refresh_token')) {
    // The default scopes include offline_access, which only makes sense with refresh tokens.
    input.scopes = DEFAULT_SCOPES.filter((s) => s !== 'offline_access');
  }
  return input;
}

/** What `client update`'s options change; a pair that contradicts itself, or nothing at all, is refused. */
function updateChanges(id: string, opts: UpdateOptions): ClientChanges {
  if (opts.allowedGroup && opts.clearAllowedGroups) {
    throw new ClientError(id, 'allowed_groups', '--allowed-group and --clear-allowed-groups contradict each other');
  }
  if (opts.backchannelLogoutUri !== undefined && opts.clearBackchannelLogoutUri) {
    throw new ClientError(id, 'backchannel_logout_uri', '--backchannel-logout-uri and --clear-backchannel-logout-uri contradict each other');
  }
  const changes: ClientChanges = {
    ...(opts.name !== undefined && { client_name: opts.name }),
    ...(opts.redirectUri !== undefined && { redirect_uris: opts.redirectUri }),
    ...(opts.postLogoutRedirectUri !== undefined && { post_logout_redirect_uris: opts.postLogoutRedirectUri }),
    ...(opts.allowedGroup !== undefined && { allowed_groups: opts.allowedGroup }),
    ...(opts.clearAllowedGroups && { allowed_groups: [] }),
    ...(opts.backchannelLogoutUri !== undefined && { backchannel_logout_uri: opts.backchannelLogoutUri }),
    ...(opts.clearBackchannelLogoutUri && { backchannel_logout_uri: '' }),
    ...(opts.requirePar !== undefined && { require_pushed_authorization_requests: opts.requirePar }),
    ...(opts.dpop !== undefined && { dpop_bound_access_tokens: opts.dpop }),
  };
  if (Object.keys(changes).length === 0) throw new ClientError(id, undefined, 'nothing to change (see kiwi-id client update --help)');
  return changes;
}

/**
 * `onExit` receives every exit (usage errors already mapped to exit 2); the
 * default ends the process. Tests pass one that throws, to stay in-process.
 */
export function registerClientCommands(
  program: Command,
  resolveClientsFile: () => string,
  onExit: ExitCallback = (err) => process.exit(err.exitCode),
  openRegistered?: OpenRegistered,
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
    .addOption(new Option('--grant <type...>', 'grant types (default authorization_code refresh_token; device_code for CLI tools)').choices(GRANT_CHOICES))
    .option('--allowed-group <group...>', 'only members of these groups may get tokens')
    .option('--post-logout-redirect-uri <uri...>', 'exact post-logout redirect URI(s)')
    .option('--backchannel-logout-uri <uri>', 'where the service receives logout tokens (OIDC Back-Channel Logout)')
    .option('--require-par', 'authorization requests only through PAR (RFC 9126)')
    .option('--dpop', 'access tokens only DPoP-bound (RFC 9449)')
    .action((id: string, opts: AddOptions, cmd: Command) =>
      guarded(cmd, () => {
        const file = resolveClientsFile();
        const input = addInput(id, opts);
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

  sub('list', 'list clients: static (clients file) and registered through /oauth2/register (never shows secrets or hashes)').action(
    (_opts: unknown, cmd: Command) =>
      guardedAsync(cmd, async () => {
        const file = resolveClientsFile();
        const clients = loadClients(file);
        const registered = await withRegistered(openRegistered, async (r) => (r ? r.list() : []));
        out(cmd, clients.length || registered.length ? formatList(clients, registered) : `no clients registered in ${file}\n`);
      }),
  );

  sub('show', 'print one client as JSON (without the secret hash)')
    .argument('<id>', 'client_id')
    .action((id: string, _opts: unknown, cmd: Command) =>
      guardedAsync(cmd, async () => {
        const c = findClient(loadClients(resolveClientsFile()), id);
        if (c) return out(cmd, JSON.stringify({ ...publicView(c), source: 'static' }, null, 2) + '\n');
        const r = await withRegistered(openRegistered, async (reg) => reg?.find(id));
        if (!r) throw new UnknownClientError(id);
        out(cmd, JSON.stringify(registeredView(r), null, 2) + '\n');
      }),
    );

  sub('remove', 'unregister a client (static, or registered through /oauth2/register)')
    .argument('<id>', 'client_id')
    .action((id: string, _opts: unknown, cmd: Command) =>
      guardedAsync(cmd, async () => {
        const file = resolveClientsFile();
        if (findClient(loadClients(file), id)) {
          updateClients(file, (list) => ({ clients: removeClient(list, id), result: undefined }));
          return out(cmd, `removed client ${id} from ${file}\n`);
        }
        const removed = await withRegistered(openRegistered, async (reg) => (reg ? reg.remove(id) : false));
        if (!removed) throw new UnknownClientError(id);
        out(cmd, `removed registered client ${id}\n`);
      }),
    );

  sub('update', 'change a client\'s name, redirect URIs or allowed groups (its secret keeps working)')
    .argument('<id>', 'client_id')
    .option('--name <name>', 'display name (client_name)')
    .option('--redirect-uri <uri...>', 'replace the exact redirect URI(s)')
    .option('--post-logout-redirect-uri <uri...>', 'replace the post-logout redirect URI(s)')
    .option('--allowed-group <group...>', 'replace the groups whose members may get tokens')
    .option('--clear-allowed-groups', 'remove the group restriction')
    .option('--backchannel-logout-uri <uri>', 'set where the service receives logout tokens')
    .option('--clear-backchannel-logout-uri', 'stop sending logout tokens to this service')
    .option('--require-par', 'authorization requests only through PAR')
    .option('--no-require-par', 'allow authorization requests without PAR')
    .option('--dpop', 'access tokens only DPoP-bound')
    .option('--no-dpop', 'allow bearer access tokens')
    .action((id: string, opts: UpdateOptions, cmd: Command) =>
      guardedAsync(cmd, async () => {
        const file = resolveClientsFile();
        await refuseRegistered(openRegistered, file, id);
        const changes = updateChanges(id, opts);
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
      guardedAsync(cmd, async () => {
        const file = resolveClientsFile();
        await refuseRegistered(openRegistered, file, id);
        const secret = updateClients(file, (list) => {
          const r = rotateSecret(list, id);
          return { clients: r.clients, result: r.secret };
        });
        out(cmd, `rotated secret of client ${id} in ${file}; the old secret no longer works\n` + secretMessage(id, secret));
      }),
    );

  return client;
}
