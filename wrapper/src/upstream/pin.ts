// The upstream binary must be exactly the build pinned in compatibility.toml:
// a different kanidmd (tampered, half-upgraded, or just another version) is
// refused before it is started.
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse } from 'smol-toml';

export interface UpstreamPin {
  name: string;
  version: string;
  checksums: Record<string, string>; // "bin/kanidmd" -> "sha256:<hex>"
}

export function readPin(compatibilityFile: string): UpstreamPin {
  const doc = parse(readFileSync(compatibilityFile, 'utf8')) as any;
  const up = doc?.upstream;
  if (!up || typeof up.version !== 'string' || typeof up.checksums !== 'object') {
    throw new Error(`${compatibilityFile}: [upstream] needs name, version and [upstream.checksums]`);
  }
  return { name: up.name, version: up.version, checksums: up.checksums };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return 'sha256:' + h.digest('hex');
}

/** Throws with both hashes when `binary` does not match its pin ("bin/<name>"). */
export async function verifyPinned(binary: string, compatibilityFile: string): Promise<string> {
  const pin = readPin(compatibilityFile);
  const rel = `bin/${basename(binary)}`;
  const want = pin.checksums[rel];
  if (!want) throw new Error(`${compatibilityFile}: no checksum pinned for ${rel}`);
  const got = await sha256File(binary);
  if (got !== want) {
    throw new Error(
      `upstream ${binary} does not match its pin: expected ${want} (${compatibilityFile}), got ${got}; ` +
        `reinstall with scripts/install-upstream`,
    );
  }
  return got;
}
