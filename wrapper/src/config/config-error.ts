// The one error a bad config file produces: "<file>: <key>: <what is wrong>",
// so an operator can fix it without reading code. Every section parser
// (config.ts, issuer.ts, ...) throws it.
export class ConfigError extends Error {
  readonly file: string;
  /** Offending key ("tls_key", "[tokens].foo"); undefined for whole-file problems. */
  readonly key: string | undefined;

  constructor(file: string, key: string | undefined, problem: string) {
    super(key === undefined ? `${file}: ${problem}` : `${file}: ${key}: ${problem}`);
    this.name = 'ConfigError';
    this.file = file;
    this.key = key;
  }
}
