// Prometheus metrics for the wrapper. One registry per process (tests create
// their own) so nothing leaks between instances.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  duration: Histogram<'route'>;
  upstreamRestarts: Counter;
  upstreamHealthy: Gauge;
  upstreamCrashLoop: Gauge;
  upstreamConnections: Counter;
  oidcEvents: Counter<'event'>;
  /** Call once the state store exists: exposes its live records per kind at scrape time. */
  observeState(countLive: () => Promise<Record<string, number>>): void;
}

export function createMetrics(opts: { processMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'kiwi_' });
  return {
    registry,
    // `route` is a small fixed set (proxy, oidc, health, metrics), never the raw
    // path: paths carry user names and ids, which would explode cardinality.
    requests: new Counter({
      name: 'kiwi_http_requests_total',
      help: 'HTTP requests answered by the wrapper',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'kiwi_http_request_duration_seconds',
      help: 'Time from request to response end',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    upstreamRestarts: new Counter({
      name: 'kiwi_upstream_restarts_total',
      help: 'Times the wrapper restarted Kanidm',
      registers: [registry],
    }),
    upstreamHealthy: new Gauge({
      name: 'kiwi_upstream_healthy',
      help: '1 while Kanidm answers its /status probe',
      registers: [registry],
    }),
    upstreamCrashLoop: new Gauge({
      name: 'kiwi_upstream_crash_loop',
      help: '1 while Kanidm exits repeatedly within a short window',
      registers: [registry],
    }),
    // Each is one TLS handshake with Kanidm; it grows with concurrency, not
    // with requests, while the proxy's keep-alive pool does its job.
    upstreamConnections: new Counter({
      name: 'kiwi_upstream_connections_total',
      help: 'Connections the reverse proxy opened to Kanidm',
      registers: [registry],
    }),
    oidcEvents: new Counter({
      name: 'kiwi_oidc_events_total',
      help: 'Issuer events: tokens issued, authorizations, OAuth2 errors, revocations, logouts',
      labelNames: ['event'],
      registers: [registry],
    }),
    observeState(countLive) {
      new Gauge({
        name: 'kiwi_state_records',
        help: 'Live issuer state records per kind (Session, Grant, RefreshToken, ...)',
        labelNames: ['kind'],
        registers: [registry],
        async collect() {
          this.reset();
          for (const [kind, n] of Object.entries(await countLive())) this.set({ kind }, n);
        },
      });
    },
  };
}
