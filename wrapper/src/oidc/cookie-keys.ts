// Keys that sign the issuer's cookies. Generated once into the data dir and
// kept, so sessions survive restarts; 0600 like every other secret.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { writeNewFilesAtomic } from '../crypto/keys.js';
import { readSecretFile } from '../files/secret-file.js';

export function loadOrCreateCookieKeys(file: string): string[] {
  if (!fs.existsSync(file)) {
    writeNewFilesAtomic([{ path: file, data: randomBytes(32).toString('base64url') + '\n', mode: 0o600 }]);
  }
  // One key per line: the first signs, all verify (rotation = prepend a line).
  const keys = readSecretFile(file).split('\n').map((l) => l.trim()).filter(Boolean);
  if (keys.length === 0) throw new Error(`${file}: no cookie keys in file`);
  return keys;
}
