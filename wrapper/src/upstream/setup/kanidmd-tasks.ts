// One-shot kanidmd subcommands that the wrapper runs itself. Each uses
// Kanidm's machine-readable interface where it has one (`kanidmd scripting`
// prints one JSON object) so nothing depends on human-oriented log text.
import { execa } from 'execa';

export class KanidmdTaskError extends Error {}

/**
 * Sets a fresh random password on `name` through the admin socket of the
 * running server (Kanidm 1.11 recovers online). The password is returned,
 * never logged.
 */
export async function recoverAccount(kanidmd: string, configPath: string, name: string): Promise<string> {
  const r = await execa(kanidmd, ['scripting', 'recover-account', name, '-c', configPath], {
    reject: false,
    stdin: 'ignore',
    env: { RUST_LOG: 'error' },
    timeout: 60_000,
  });
  // `scripting` exits 0 even on failure: the JSON status is the answer.
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  let out: { status?: string; output?: unknown; reason?: string; message?: string } = {};
  try {
    out = line ? JSON.parse(line) : {};
  } catch {
    /* reported below */
  }
  if (out.status === 'ok' && typeof out.output === 'string' && out.output) return out.output;
  throw new KanidmdTaskError(
    `kanidmd recover-account ${name} failed: ${out.message ?? out.reason ?? (r.stderr.trim().split('\n').pop() || `exit ${r.exitCode}`)}`,
  );
}

/**
 * Rebuilds every index of the (stopped) server's database. Needed once after
 * Kanidm 1.11.1 creates a new database: its bootstrap indexes only a subset of
 * attributes (kanidm/kanidm#4534, fixed upstream after 1.11.1 by #4539), and
 * searches on the others then fail with a 500 (ResourceLimit, "fully
 * unindexed"). Kanidm's own documented remedy is this offline reindex.
 */
export async function reindexDatabase(kanidmd: string, configPath: string): Promise<void> {
  const r = await execa(kanidmd, ['database', 'reindex', '-c', configPath], {
    reject: false,
    stdin: 'ignore',
    all: true,
    timeout: 600_000,
  });
  if (r.exitCode !== 0 || !/reindex: complete/i.test(r.all ?? '')) {
    throw new KanidmdTaskError(`kanidmd database reindex failed (exit ${r.exitCode}): ${(r.all ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  }
}
