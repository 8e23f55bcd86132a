// Errors the cluster layer raises inside the token endpoint. Shaped like oidc-provider's own
// errors (message = OAuth2 error code, `expose`, `statusCode`), so the client gets a proper
// OAuth2 error response, never a 500 with internals.
export class ClusterUnavailableError extends Error {
  readonly error = 'temporarily_unavailable';
  readonly error_description: string;
  readonly expose = true;
  readonly status = 503;
  readonly statusCode = 503;

  constructor(description: string) {
    super('temporarily_unavailable');
    this.name = 'ClusterUnavailableError';
    this.error_description = description;
  }
}

/** A peer that knows the grant or record is revoked or used refused the issuance. */
export class QuorumDeniedError extends Error {
  readonly error = 'invalid_grant';
  readonly error_description: string;
  readonly expose = true;
  readonly status = 400;
  readonly statusCode = 400;

  constructor(description: string) {
    super('invalid_grant');
    this.name = 'QuorumDeniedError';
    this.error_description = description;
  }
}
