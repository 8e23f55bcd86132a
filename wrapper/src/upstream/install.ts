// Putting Kanidm binaries in place on a running system (`kiwi-id upstream
// install DIR`): every pinned binary in DIR is checked against the pins of
// this Kiwi ID first, and only when all match are they swapped in, each by
// rename (the running kanidmd keeps its own, already verified, file). A
// binary that does not match is refused before anything changes, so the
// running Kanidm keeps serving. A new Kanidm version therefore arrives with a
// new Kiwi ID release (new pins), never on its own.
import fs from 'node:fs';
import path from 'node:path';
import { readPin, sha256File } from './pin.js';
import { fsyncDir, writeTemp } from '../files/atomic-file.js';

export interface UpstreamFiles {
  /** The installed binaries: bin/kanidmd → upstream_bin, bin/kanidm → upstream_cli. */
  targets: Record<string, string>;
  compatibilityFile: string;
}

export class UpstreamRefused extends Error {}

export interface CheckedBinary {
  rel: string; // "bin/kanidmd"
  file: string;
  sha256: string;
}

/** Checks DIR's pinned binaries; throws UpstreamRefused naming every mismatch (file, expected, got). */
export async function verifyUpstreamDir(dir: string, compatibilityFile: string): Promise<CheckedBinary[]> {
  const pin = readPin(compatibilityFile);
  const checked: CheckedBinary[] = [];
  const problems: string[] = [];
  for (const [rel, want] of Object.entries(pin.checksums).sort()) {
    const file = path.join(dir, rel);
    if (!fs.existsSync(file)) {
      problems.push(`${file} is missing (pinned in ${compatibilityFile})`);
      continue;
    }
    const got = await sha256File(file);
    if (got !== want) problems.push(`${file} does not match the pin of this Kiwi ID: expected ${want} (${compatibilityFile}), got ${got}`);
    else checked.push({ rel, file, sha256: got });
  }
  if (problems.length) throw new UpstreamRefused(problems.join('\n'));
  return checked;
}

/**
 * Verifies DIR, then replaces each target whose content differs. Returns the
 * targets written. Nothing is written unless every binary matches its pin.
 */
export async function installUpstream(dir: string, o: UpstreamFiles): Promise<string[]> {
  const checked = await verifyUpstreamDir(dir, o.compatibilityFile);
  const written: string[] = [];
  for (const c of checked) {
    const target = o.targets[c.rel];
    if (!target) continue; // pinned, but not something this config runs
    if (fs.existsSync(target) && (await sha256File(target)) === c.sha256) continue;
    const tmp = writeTemp(target, fs.readFileSync(c.file), 0o755);
    try {
      fs.renameSync(tmp, target);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fsyncDir(path.dirname(target));
    written.push(target);
  }
  return written;
}
