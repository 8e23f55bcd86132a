// What a capability built beside the issuer (federation, …) may plug into it:
// its own paths on the issuer origin and the sign-in step. It is handed the
// parts it needs once the provider exists, so it lives in its own folder and
// the issuer stays unaware of its details.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import type { Accounts } from './accounts.js';

export type InteractionDetails = Awaited<ReturnType<Provider['interactionDetails']>>;

export interface IssuerParts {
  provider: Provider;
  accounts: Accounts;
  issuer: string;
  log: Logger;
}

export interface IssuerExtension {
  /** Paths it answers on the issuer origin (callbacks, pages). */
  matches?(pathname: string): boolean;
  handle?(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void>;
  /**
   * The sign-in step (prompt `login`, GET or POST): true when the extension
   * answered the request; false leaves it to the built-in Kanidm login.
   */
  loginPrompt?(details: InteractionDetails, req: IncomingMessage, res: ServerResponse): Promise<boolean>;
}

export type IssuerExtensionFactory = (parts: IssuerParts) => IssuerExtension;
