// The errors of the clients file and its operations. Every message is one line naming the
// client (its id, or its index while the id is unusable) and the key: "client[<id>].<key>: <what>",
// prefixed with the file where there is one.

function where(client: string | undefined, key: string | undefined): string {
  const c = client === undefined ? '' : `client[${client}]`;
  if (key === undefined) return c;
  return c === '' ? key : `${c}.${key}`;
}

/** A client definition is invalid (from addClient & co, where there is no file). */
export class ClientError extends Error {
  /** Client id, or the entry's index when the id itself is unusable. */
  readonly client: string | undefined;
  readonly key: string | undefined;
  readonly problem: string;

  constructor(client: string | undefined, key: string | undefined, problem: string) {
    const w = where(client, key);
    super(w === '' ? problem : `${w}: ${problem}`);
    this.name = 'ClientError';
    this.client = client;
    this.key = key;
    this.problem = problem;
  }
}

/** The clients file is unreadable or invalid; message is one line naming file, client and key. */
export class ClientsFileError extends Error {
  readonly file: string;
  readonly client: string | undefined;
  readonly key: string | undefined;
  readonly problem: string;

  constructor(file: string, client: string | undefined, key: string | undefined, problem: string) {
    const w = where(client, key);
    super(w === '' ? `${file}: ${problem}` : `${file}: ${w}: ${problem}`);
    this.name = 'ClientsFileError';
    this.file = file;
    this.client = client;
    this.key = key;
    this.problem = problem;
  }

  static from(file: string, e: ClientError): ClientsFileError {
    return new ClientsFileError(file, e.client, e.key, e.problem);
  }
}

/** removeClient / rotateSecret / lookups named a client_id that is not registered. */
export class UnknownClientError extends Error {
  readonly client_id: string;

  constructor(clientId: string) {
    super(`no client with client_id ${JSON.stringify(clientId)}`);
    this.name = 'UnknownClientError';
    this.client_id = clientId;
  }
}

