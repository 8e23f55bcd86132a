// Federation's Prometheus series, on the wrapper's registry. Labels are
// bounded: `idp` is a configured id, `result` one of the fixed outcomes.
import { Counter, type Registry } from 'prom-client';

export const SIGNIN_RESULTS = [
  'success', 'not_linked', 'rejected', 'upstream_denied', 'unavailable', 'invalid_state', 'account_invalid',
] as const;
export type SignInResult = (typeof SIGNIN_RESULTS)[number];

export interface FederationMetrics {
  signIn(idp: string, result: SignInResult): void;
  jwtBearer(result: 'success' | 'invalid_grant'): void;
}

export function federationMetrics(registry: Registry | undefined): FederationMetrics {
  if (!registry) return { signIn: () => {}, jwtBearer: () => {} };
  const signins = new Counter({
    name: 'kiwi_federation_signins_total',
    help: 'Sign-ins through upstream identity providers, by IdP and result',
    labelNames: ['idp', 'result'],
    registers: [registry],
  });
  const bearer = new Counter({
    name: 'kiwi_federation_jwt_bearer_total',
    help: 'JWT-bearer grant (RFC 7523) requests by result',
    labelNames: ['result'],
    registers: [registry],
  });
  return {
    signIn: (idp, result) => signins.inc({ idp, result }),
    jwtBearer: (result) => bearer.inc({ result }),
  };
}
