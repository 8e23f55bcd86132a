// Shared helpers for validating parsed TOML (config file, clients file).

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
