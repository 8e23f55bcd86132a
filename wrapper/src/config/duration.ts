// Parsers for the human-friendly duration and size strings used in config files.
// Only integers are accepted: "1.5s" is rejected rather than silently rounded.

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const BYTE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

/** Parses "500ms", "5s", "2m", "1h", "1d" into milliseconds. */
export function parseDuration(s: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(s);
  const ms = match ? Number(match[1]) * DURATION_UNITS_MS[match[2]] : NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new Error(`${JSON.stringify(s)} is not a duration (use e.g. 500ms, 5s, 2m)`);
  }
  return ms;
}

/** Parses "512B", "64KiB", "1MiB", "1GiB", or a plain integer (bytes) into bytes. */
export function parseByteSize(s: string | number): number {
  let bytes = NaN;
  if (typeof s === 'number') {
    bytes = s;
  } else {
    const match = /^(\d+)(B|KiB|MiB|GiB)?$/.exec(s);
    if (match) bytes = Number(match[1]) * BYTE_UNITS[match[2] ?? 'B'];
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new Error(`${JSON.stringify(s)} is not a byte size (use e.g. 512B, 64KiB, 1MiB)`);
  }
  return bytes;
}
