// `kiwi-id session list|revoke`: the signed-in Kiwi ID sessions, and ending
// them as an admin. Revoking deletes the user's sessions and their grants
// (refresh tokens, introspection) in the state store; the running issuer
// notices within seconds and sends each service of those sessions its
// back-channel logout token.
import { Command } from 'commander';
import type { AccountClaims } from '../oidc/accounts.js';
import { listSessions, revokeSessions } from '../oidc/logout/session-watch.js';
import type { StateStore } from '../state/store.js';

export type OpenStore = () => StateStore;

/** Subjects whose sub or preferred_username (Kanidm name or SPN) is `user`. */
async function subjectsOf(store: StateStore, user: string): Promise<Set<string>> {
  const out = new Set<string>([user]);
  for (const rec of await store.list('Account')) {
    const a = rec.payload as unknown as AccountClaims;
    const name = a.preferred_username?.toLowerCase();
    if (name && (name === user.toLowerCase() || name.split('@')[0] === user.toLowerCase())) out.add(a.sub);
  }
  return out;
}

async function usingStore<T>(open: OpenStore, use: (s: StateStore) => Promise<T>): Promise<T> {
  const store = open();
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

export function registerSessionCommands(program: Command, openStore: OpenStore): Command {
  const session = program.command('session').description('signed-in Kiwi ID sessions (list, end them as an admin)');

  session
    .command('list')
    .description('live sessions as JSON lines: session, user, services, end time')
    .option('--user <name>', 'only this user (sub or Kanidm name)')
    .action(async (opts: { user?: string }) =>
      usingStore(openStore, async (store) => {
        const subs = opts.user ? await subjectsOf(store, opts.user) : undefined;
        for (const s of await listSessions(store)) {
          if (subs && !subs.has(s.accountId)) continue;
          process.stdout.write(JSON.stringify({ session: s.sessionId, sub: s.accountId, clients: s.clients, ends_at: new Date(s.endsAt).toISOString() }) + '\n');
        }
      }),
    );

  session
    .command('revoke')
    .description("end every session of a user now; their services get back-channel logout tokens, their refresh tokens stop")
    .argument('<user>', 'sub or Kanidm name of the user')
    .action(async (user: string) =>
      usingStore(openStore, async (store) => {
        const ended = await revokeSessions(store, await subjectsOf(store, user));
        if (ended.length === 0) {
          process.stdout.write(`no live session of ${user}\n`);
          return;
        }
        const clients = [...new Set(ended.flatMap((e) => e.clients))];
        process.stdout.write(
          `ended ${ended.length} session(s) of ${user}; the running issuer tells these services within seconds: ${clients.join(', ') || '(none)'}\n`,
        );
      }),
    );
  return session;
}
