// What every piece of federation is built from (federation/index.ts assembles
// them once): its config, this issuer, the state and link stores, the Kanidm
// directory, metrics and the log. Each piece adds what only it needs.
import type { Logger } from 'pino';
import type { FederationConfig } from '../config/federation.js';
import type { StateStore } from '../state/store.js';
import type { PersonDirectory } from './directory.js';
import type { LinkStore } from './links.js';
import type { FederationMetrics } from './metrics.js';

export interface FederationParts {
  config: FederationConfig;
  issuer: string;
  store: StateStore;
  links: LinkStore;
  directory: PersonDirectory;
  metrics: FederationMetrics;
  log: Logger;
}
