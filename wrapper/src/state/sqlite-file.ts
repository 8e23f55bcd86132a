// How every SQLite file of Kiwi ID is opened (state.db, the cluster's
// replica, the sign-in attempts): owner-only, WAL so several processes (the
// workers, the CLI) read and write it at once, synchronous = NORMAL (in WAL
// mode a commit survives the process being killed; a power cut may lose the
// last ones), and a busy timeout instead of an immediate SQLITE_BUSY.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

/**
 * Opens `<dir>/<name>`: the directory made 0700 if missing, the file created
 * 0600 before SQLite opens it (and an existing one tightened). `migrate`
 * brings its schema up to date; the file is closed again if that fails.
 */
export function openSqliteFile(
  dir: string,
  name: string,
  o: { busyTimeoutMs?: number; migrate?: (db: Database.Database) => void } = {},
): { db: Database.Database; file: string } {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.resolve(dir, name);
  fs.closeSync(fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600));
  fs.chmodSync(file, 0o600);
  const timeout = o.busyTimeoutMs ?? 5_000;
  // The self-contained artifact ships the addon next to its bundle (lxc/, scripts/build-artifact).
  const db = new Database(file, { timeout, nativeBinding: process.env.KIWI_SQLITE_ADDON || undefined });
  try {
    db.pragma(`busy_timeout = ${timeout}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    o.migrate?.(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return { db, file };
}
