// What the issuer reports: OAuth2 errors to the log (never a token or a
// stack to the client), event counts to Prometheus.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { redactUrl } from '../telemetry/log.js';

const LOGGED_ERRORS = [
  'grant.error', 'introspection.error', 'revocation.error', 'userinfo.error', 'authorization.error',
  'device_authorization.error', 'code_verification.error', 'device_resume.error', 'pushed_authorization_request.error',
  'registration_create.error', 'registration_read.error', 'registration_update.error', 'registration_delete.error',
  'end_session.error',
] as const;
// backchannel.delivered / backchannel.failed are counted by logout/backchannel.ts.
const COUNTED = [
  'authorization.success', 'authorization.error', 'grant.success', 'grant.error', 'grant.revoked',
  'end_session.success', 'introspection.error', 'revocation.error', 'userinfo.error', 'server_error',
  'device_authorization.success', 'pushed_authorization_request.success',
  'registration_create.success', 'registration_update.success', 'registration_delete.success', 'registration_create.error',
];

export function reportEvents(provider: Provider, log: Logger, countEvent?: (event: string) => void): void {
  provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
    log.error({ err_message: err.message, stack: err.stack, url: redactUrl(ctx.url) }, 'issuer server_error');
  });
  for (const ev of LOGGED_ERRORS) {
    provider.on(ev, (_ctx: KoaContextWithOIDC, err: Error & { error_description?: string; error_detail?: string }) => {
      // error_detail is what oidc-provider keeps from the client ("DPoP proof JWT Replay detected"): for operators.
      log.info({ event: ev, error: err.message, error_description: err.error_description, error_detail: err.error_detail }, 'oauth2 error');
    });
  }
  if (countEvent) for (const ev of COUNTED) provider.on(ev, () => countEvent(ev));
  provider.on('grant.revoked', (_ctx: KoaContextWithOIDC, grantId: string) => log.warn({ grant_id: grantId }, 'grant revoked'));
  // An audit trail of dynamic registration: who exists because of the API.
  for (const ev of ['registration_create.success', 'registration_update.success', 'registration_delete.success']) {
    provider.on(ev, (_ctx: KoaContextWithOIDC, client: { clientId: string }) => log.info({ event: ev, client_id: client.clientId }, 'registered client changed'));
  }
}
