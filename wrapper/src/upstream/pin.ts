// The upstream binary must be exactly the build pinned in compatibility.toml:
// a different kanidmd (tampered, half-upgraded, or just another version) is
// refused before it is started.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
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

/**
 * Hashes the file through one reused buffer. Why not a read stream: kanidmd
 * is ~60 MB, checked at every start and restart, and a stream hands out a
 * fresh 64 KiB chunk per read; a thousand chunks of garbage fragmented
 * malloc's heap and kept ~25 MiB of the wrapper's idle RSS (README,
 * Benchmarks). One buffer is also twice as fast.
 */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  const file = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafeSlow(1 << 20);
    for (let n; (n = (await file.read(buf, 0, buf.length, null)).bytesRead) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    await file.close();
  }
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
