// First boot: the least-privilege Kanidm service account federation reads
// persons and groups with. It is a member of `idm_people_pii_read` only
// (Kanidm's built-in search access to persons' name, SPN, display name, mail,
// group memberships and validity; nothing it can write) and holds one
// read-only API token, kept 0600 in [federation] kanidm_token_file.
// Done with the unmodified `kanidm` CLI as idm_admin, once; never overwritten.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { writeNewFilesAtomic } from '../crypto/keys.js';

export const READER_ACCOUNT = 'kiwi-id-reader';
export const READER_GROUP = 'idm_people_pii_read';

export interface ReaderAccountOptions {
  /** The `kanidm` CLI. */
  cli: string;
  /** Kanidm's URL (loopback) and the CA that alone is trusted for it. */
  url: string;
  caPath: string;
  adminPassword: string;
  tokenFile: string;
}

/** Creates the account, its group membership and its token unless the token file exists. */
export async function ensureReaderAccount(o: ReaderAccountOptions): Promise<'created' | 'kept'> {
  if (fs.existsSync(o.tokenFile)) return 'kept';
  // The CLI keeps its session token under $HOME: a private, throwaway one.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-kanidm-cli-'));
  const env = { HOME: home, KANIDM_URL: o.url, KANIDM_CA_PATH: o.caPath, KANIDM_PASSWORD: o.adminPassword };
  const kanidm = async (...args: string[]) => {
    const r = await execa(o.cli, [...args, '-D', 'idm_admin', '-o', 'json'], { env, extendEnv: false, reject: false, timeout: 60_000 });
    if (r.exitCode !== 0) {
      const why = r.exitCode === undefined ? r.message : String(r.stderr).split('\n').map((l) => l.replace(/\x1b\[[0-9;]*m/g, '')).filter((l) => /error/i.test(l)).slice(-1)[0] ?? `exit ${r.exitCode}`;
      throw new Error(`kanidm ${args.slice(0, 3).join(' ')}: ${(why ?? '').trim()}`);
    }
    return String(r.stdout).trim();
  };
  try {
    await kanidm('login');
    const existing = await kanidm('service-account', 'get', READER_ACCOUNT);
    if (!existing.startsWith('{')) {
      await kanidm('service-account', 'create', READER_ACCOUNT, 'Kiwi ID directory reader (federation)', 'idm_admins');
    }
    await kanidm('group', 'add-members', READER_GROUP, READER_ACCOUNT);
    // Read-only unless --readwrite is given: it is not.
    const out = JSON.parse((await kanidm('service-account', 'api-token', 'generate', READER_ACCOUNT, 'kiwi-id federation')).split('\n').pop()!);
    if (out.status !== 'success' || typeof out.result !== 'string') throw new Error('kanidm api-token generate: no token in its output');
    writeNewFilesAtomic([{ path: o.tokenFile, data: out.result + '\n', mode: 0o600 }]);
    return 'created';
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}
