// Federation with external identity providers, assembled for `kiwi-id run`:
// one upstream client per configured IdP, the link store, the sign-in step
// extension and the JWT-bearer grant. The issuer receives it as one
// extension; nothing is plugged in when `[federation]` configures nothing.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Dispatcher } from 'undici';
import type { KiwiConfig } from '../config/config.js';
import type { FederationConfig } from '../config/federation.js';
import { readSecretFile } from '../files/secret-file.js';
import type { IssuerExtension, IssuerExtensionFactory } from '../oidc/extension.js';
import { PATHS } from '../oidc/paths.js';
import type { StateStore } from '../state/store.js';
import { DirectoryError, KanidmDirectory, type PersonDirectory } from './directory.js';
import { JwtBearerGrant } from './jwt-bearer.js';
import { LinkStore } from './links.js';
import type { FederationParts } from './parts.js';
import { federationMetrics } from './metrics.js';
import { FederatedSignIn } from './sign-in.js';
import { UpstreamClient } from './upstream-client.js';

export interface FederationOptions {
  config: FederationConfig;
  /** The public issuer URL (origin of the callbacks). */
  issuer: string;
  store: StateStore;
  directory: PersonDirectory;
  log: Logger;
  /** The wrapper's Prometheus registry. */
  registry?: Registry;
}

export interface Federation {
  /** For createIssuer's `extensions`; undefined when nothing is configured. */
  readonly extension: IssuerExtensionFactory | undefined;
  readonly links: LinkStore;
  close(): Promise<void>;
}

export function createFederation(o: FederationOptions): Federation {
  const links = new LinkStore(o.store);
  const cfg = o.config;
  if (cfg.upstream_idps.length === 0 && cfg.trusted_issuers.length === 0) {
    return { extension: undefined, links, close: async () => {} };
  }
  const metrics = federationMetrics(o.registry);
  const clients = new Map(
    cfg.upstream_idps.map((idp) => [
      idp.id,
      new UpstreamClient(idp, { redirectUri: o.issuer + idp.callback_path, clockSkewSecs: cfg.max_clock_skew_secs, defaultCaFile: cfg.ca_file }),
    ]),
  );
  const shared: FederationParts = { config: cfg, issuer: o.issuer, store: o.store, links, directory: o.directory, metrics, log: o.log };
  const bearer = new JwtBearerGrant({ ...shared, tokenEndpoint: o.issuer + PATHS.token });
  const extension: IssuerExtensionFactory = (parts): IssuerExtension => {
    bearer.register(parts);
    if (clients.size === 0) return {};
    return new FederatedSignIn({ ...shared, clients }, parts);
  };
  return {
    extension,
    links,
    close: async () => {
      await Promise.all([...clients.values()].map((c) => c.close()));
      await bearer.close();
    },
  };
}

/**
 * The read-only Kanidm directory: Kanidm on loopback through `dispatcher`
 * (its CA pinned), as the service account whose API token `kiwi-id init`
 * writes to [federation] kanidm_token_file.
 */
export function kanidmDirectory(cfg: KiwiConfig, dispatcher: Dispatcher): PersonDirectory {
  return new KanidmDirectory({
    upstreamAddr: cfg.upstream_addr,
    dispatcher,
    token: () => {
      try {
        return readSecretFile(cfg.federation.kanidm_token_file).trim();
      } catch (e) {
        throw new DirectoryError(`cannot read the Kanidm reader token (${(e as Error).message}); run kiwi-id init`);
      }
    },
  });
}
