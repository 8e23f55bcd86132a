// The sign-in attempts the front door's rate limit counts, per source address.
//
// Why SQLite and not a Map: with `workers` > 1 every worker process serves
// the listener, and a count kept in each process would let an address make
// `workers` times the configured attempts. One small file in data_dir,
// shared by all processes (WAL, each take() one IMMEDIATE transaction), keeps
// one budget per address; it also survives a restart, so restarting the
// service does not hand a guesser a fresh budget. Only credential
// submissions reach it, so its writes are a few per sign-in.
import type Database from 'better-sqlite3';
import { openSqliteFile } from './sqlite-file.js';

export const SIGN_IN_ATTEMPTS_FILE = 'sign-in-attempts.db';

export interface AttemptLog {
  /**
   * Records an attempt by `address` at `now`, unless `limit` attempts already
   * fall within the window ending at `now`: then nothing is recorded and the
   * time of the oldest attempt still counted is returned (null: recorded).
   */
  take(address: string, now: number, windowMs: number, limit: number): number | null;
  /** Forgets attempts made at or before `before`. */
  sweep(before: number): void;
  close(): void;
}

export class SqliteAttemptLog implements AttemptLog {
  private readonly db: Database.Database;
  private readonly takeTx: (address: string, now: number, windowMs: number, limit: number) => number | null;
  private readonly sweepStmt: Database.Statement;

  constructor(o: { dataDir: string; busyTimeoutMs?: number }) {
    // Owner-only like every state file: addresses are personal data.
    this.db = openSqliteFile(o.dataDir, SIGN_IN_ATTEMPTS_FILE, {
      busyTimeoutMs: o.busyTimeoutMs,
      migrate: (db) =>
        db.exec(`CREATE TABLE IF NOT EXISTS attempts (address TEXT NOT NULL, at INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS attempts_by_address ON attempts (address, at);`),
    }).db;
    const forgetOld = this.db.prepare('DELETE FROM attempts WHERE address = ? AND at <= ?');
    const counted = this.db.prepare('SELECT count(*) AS n, min(at) AS oldest FROM attempts WHERE address = ?');
    const record = this.db.prepare('INSERT INTO attempts (address, at) VALUES (?, ?)');
    this.sweepStmt = this.db.prepare('DELETE FROM attempts WHERE at <= ?');
    // IMMEDIATE: the count and the insert are one step for every process, so
    // two workers cannot both take the last free attempt.
    const tx = this.db.transaction((address: string, now: number, windowMs: number, limit: number) => {
      forgetOld.run(address, now - windowMs);
      const { n, oldest } = counted.get(address) as { n: number; oldest: number | null };
      if (n >= limit) return oldest!;
      record.run(address, now);
      return null;
    });
    this.takeTx = (...args) => tx.immediate(...args);
  }

  take(address: string, now: number, windowMs: number, limit: number): number | null {
    return this.takeTx(address, now, windowMs, limit);
  }

  sweep(before: number): void {
    this.sweepStmt.run(before);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
