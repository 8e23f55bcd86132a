// A section of config.toml being read: typed readers for its keys (durations,
// byte sizes, bounded integers, paths relative to the file), each failing
// with the one-line ConfigError that names the file and "[section].key".
import { parseByteSize, parseDuration } from './duration.js';
import { isTable, SectionReader, tomlType, type Table } from './toml-types.js';
import { ConfigError } from './config-error.js';

/** One TOML table plus where its keys live, so errors can name "[tokens].foo". */
export class Section extends SectionReader {
  constructor(
    readonly file: string,
    table: Table,
    prefix: string,
    baseDir: string,
  ) {
    super(table, prefix, baseDir);
  }

  error(key: string, problem: string): ConfigError {
    return new ConfigError(this.file, this.prefix + key, problem);
  }

  /** Runs a parser that throws plain Errors and re-throws them against `key`. */
  convert<T>(key: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw this.error(key, (e as Error).message);
    }
  }

  section(key: string): Section {
    const v = this.table[key] ?? {};
    if (!isTable(v)) throw this.error(key, `expected a table, got ${tomlType(v)}`);
    return new Section(this.file, v, `[${key}].`, this.baseDir);
  }

  /** The sub-table `key` (empty when absent), failing on any key not in `allowed`. */
  knownSection(key: string, allowed: readonly string[]): Section {
    const sec = this.section(key);
    sec.rejectUnknown(allowed);
    return sec;
  }

  durationMs(key: string, fallback: string, o: { allowZero?: boolean } = {}): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'string') {
      throw this.error(key, `expected a duration string like "5s", got ${tomlType(v)}`);
    }
    const ms = this.convert(key, () => parseDuration(v));
    if (ms < 0 || (ms === 0 && !o.allowZero)) throw this.error(key, 'must be greater than 0');
    return ms;
  }

  byteSize(key: string, fallback: string): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw this.error(key, `expected a byte size like "1MiB" or an integer, got ${tomlType(v)}`);
    }
    const bytes = this.convert(key, () => parseByteSize(v));
    if (bytes <= 0) throw this.error(key, 'must be greater than 0');
    return bytes;
  }

  /** A whole number >= 0. */
  count(key: string, fallback: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw this.error(key, `expected a whole number >= 0, got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }

  /** A whole number from `min` to `max`. */
  between(key: string, fallback: number, min: number, max: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw this.error(key, `expected an integer from ${min} to ${max}, got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }

  positiveInt(key: string, fallback: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw this.error(key, `expected a positive integer (seconds), got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }
}
