// Shared helpers for validating parsed TOML (config file, clients file).
import path from 'node:path';

export type Table = Record<string, unknown>;

export function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** TOML type name of a parsed value, for "expected X, got Y" messages. */
export function tomlType(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'float';
  if (typeof v === 'bigint') return 'integer';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'datetime';
  if (v === null) return 'null';
  if (isTable(v)) return 'table';
  return typeof v;
}

/**
 * Key-scoped reader over one parsed table. Subclasses decide how an error is
 * worded (which file, section or client it names).
 */
export abstract class TableReader {
  constructor(readonly table: Table) {}

  abstract error(key: string, problem: string): Error;

  optionalString(key: string): string | undefined {
    const v = this.table[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw this.error(key, `expected a string, got ${tomlType(v)}`);
    if (v === '') throw this.error(key, 'must not be empty');
    return v;
  }
}

/**
 * A section of a config file: keys named with the section's prefix in errors,
 * paths relative to the file's directory. Subclasses decide the error type.
 */
export abstract class SectionReader extends TableReader {
  constructor(
    table: Table,
    readonly prefix: string,
    readonly baseDir: string,
  ) {
    super(table);
  }

  rejectUnknown(allowed: readonly string[]): void {
    for (const key of Object.keys(this.table)) if (!allowed.includes(key)) throw this.error(key, 'unknown key');
  }

  string(key: string, fallback?: string): string {
    const v = this.optionalString(key) ?? fallback;
    if (v === undefined) throw this.error(key, 'is required');
    return v;
  }

  optionalPath(key: string): string | undefined {
    const v = this.optionalString(key);
    return v === undefined ? undefined : path.resolve(this.baseDir, v);
  }

  path(key: string, fallback?: string): string {
    return path.resolve(this.baseDir, this.string(key, fallback));
  }
}
