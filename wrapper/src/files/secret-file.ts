// Reading a file that holds a secret (cookie keys, Kanidm client secret):
// refused, naming the file, when group or others can read it.
import fs from 'node:fs';

export function readSecretFile(file: string): string {
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw new Error(`${file}: secret is readable by group/others (mode ${mode.toString(8).padStart(4, '0')}); run chmod 600 ${file}`);
  }
  return fs.readFileSync(file, 'utf8');
}
