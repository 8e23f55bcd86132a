// Crash-safe file writes shared by keys, certificates and the clients file:
// data goes to a temp file in the target's directory (exclusive create, exact
// mode via fchmod so the umask cannot change it, fsync), then rename(2).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface FileOwner {
  uid: number;
  gid: number;
}

/**
 * Who a file written into `dir` should belong to when root writes it: the
 * directory's owner (e.g. an operator's `kiwi-id client add` in the appliance
 * writes for the service user that reads the file). Undefined otherwise.
 */
export function ownerForRootWrite(dir: string): FileOwner | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const st = fs.statSync(dir);
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

/** Writes `data` to a new temp file next to `target` and returns its path. */
export function writeTemp(target: string, data: string | Buffer, mode: number, owner?: FileOwner): string {
  const abs = path.resolve(target);
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    fs.fchmodSync(fd, mode);
    if (owner) fs.fchownSync(fd, owner.uid, owner.gid); // before the rename: never visible with the wrong owner
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  return tmp;
}

/** Makes a rename durable; not supported everywhere, and the rename is atomic regardless. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // ignore: see above
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Replaces (or creates) `target` atomically with the given mode (and owner). */
export function replaceFileAtomic(target: string, data: string | Buffer, mode: number, owner?: FileOwner): void {
  const tmp = writeTemp(target, data, mode, owner);
  try {
    fs.renameSync(tmp, path.resolve(target));
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(path.resolve(target)));
}
