// Errors the cluster layer raises inside the token endpoint. Shaped like oidc-provider's own
// errors (message = OAuth2 error code, `expose`, `statusCode`), so the client gets a proper
// OAuth2 error response, never a 500 with internals.
abstract class ClusterOAuth2Error extends Error {
  readonly expose = true;
  readonly status: number;
  readonly statusCode: number;

  constructor(
    readonly error: string,
    status: number,
    readonly error_description: string,
  ) {
    super(error);
    this.status = this.statusCode = status;
    this.name = new.target.name;
  }
}

/** The node a code or token must be consumed at cannot be reached (fail closed). */
export class ClusterUnavailableError extends ClusterOAuth2Error {
  constructor(description: string) {
    super('temporarily_unavailable', 503, description);
  }
}

/** A peer that knows the grant or record is revoked or used refused the issuance. */
export class QuorumDeniedError extends ClusterOAuth2Error {
  constructor(description: string) {
    super('invalid_grant', 400, description);
  }
}
