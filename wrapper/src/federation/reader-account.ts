// First boot: the least-privilege Kanidm service account federation reads
// persons and groups with. It is a member of `idm_people_pii_read` only
// (Kanidm's built-in search access to persons' name, SPN, display name, mail,
// group memberships and validity; nothing it can write) and holds one
// read-only API token, kept 0600 in [federation] kanidm_token_file.
// Done with the unmodified `kanidm` CLI as idm_admin; never overwritten.
import fs from 'node:fs';
import type { KiwiConfig } from '../config/config.js';
import { ensureParentDir, writeNewFilesAtomic } from '../crypto/keys.js';
import { KanidmCli } from '../upstream/setup/kanidm-cli.js';

export const READER_ACCOUNT = 'kiwi-id-reader';
export const READER_GROUP = 'idm_people_pii_read';

/** Whether first boot should make the reader: federation is configured and its token is missing. */
export function readerAccountNeeded(cfg: KiwiConfig): boolean {
  const fed = cfg.federation;
  return (fed.upstream_idps.length > 0 || fed.trusted_issuers.length > 0) && !fs.existsSync(fed.kanidm_token_file);
}

/** Creates the account (or completes it), its group membership and a token; Kanidm must be running. */
export async function ensureReaderAccount(cfg: KiwiConfig, idmAdminPassword: string): Promise<void> {
  const cli = new KanidmCli({ cli: cfg.upstream_cli, url: cfg.upstream_addr, caPath: cfg.upstream_ca });
  try {
    await cli.login('idm_admin', idmAdminPassword);
    // `get` prints "No matching entries" (exit 0) for an unknown account.
    const existing = await cli.run(['service-account', 'get', READER_ACCOUNT, '-o', 'json']);
    if (!existing.includes(`"${READER_ACCOUNT}"`)) {
      await cli.run(['service-account', 'create', READER_ACCOUNT, 'Kiwi ID directory reader (federation)', 'idm_admins']);
    }
    await cli.run(['group', 'add-members', READER_GROUP, READER_ACCOUNT]);
    // Read-only: no --readwrite.
    const out = await cli.json<{ status?: string; result?: string }>(['service-account', 'api-token', 'generate', READER_ACCOUNT, 'kiwi-id federation']);
    if (out.status !== 'success' || typeof out.result !== 'string') throw new Error('kanidm service-account api-token generate: no token in its output');
    ensureParentDir(cfg.federation.kanidm_token_file, true);
    writeNewFilesAtomic([{ path: cfg.federation.kanidm_token_file, data: out.result + '\n', mode: 0o600 }]);
  } finally {
    cli.close();
  }
}
