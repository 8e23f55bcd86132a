// TLS toward Kanidm: its own CA is the only trust root and the certificate
// must name the configured upstream host. Verification is never turned off.
import { readFileSync } from 'node:fs';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { isIP } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { urlHost } from '../config/url-host.js';

export interface UpstreamTls {
  /** Kanidm's CA as the only trust root, shared by every agent and connection made from this. */
  context: SecureContext;
  host: string; // hostname or IP from upstream_addr
}

// One TLS context, not one per connection: building it (the CA parsed, an
// OpenSSL context set up) took ~0.45 ms of every new connection.
export function upstreamTls(upstreamAddr: string, caPath: string): UpstreamTls {
  return {
    context: createSecureContext({ ca: readFileSync(caPath) }),
    host: urlHost(upstreamAddr),
  };
}

/**
 * How long a pooled connection to Kanidm may sit idle. The pinned Kanidm
 * (1.11.1) closes a connection idle for 60 s (hyper's header_read_timeout,
 * HTTPS_CLIENT_IO_TIMEOUT in its server/core/src/https/mod.rs; measured:
 * 60.0 s) and sends no Keep-Alive hint, so the pool lets go 10 s earlier:
 * that margin keeps requests off connections Kanidm is about to close, and
 * traffic that pauses for less than 50 s finds its connections still open.
 * Each new one is a full TLS handshake (Kanidm resumes no TLS 1.3 session)
 * costing the event loop 1.2–1.7 ms, and a pool refilling at once after a
 * pause was the tail of the proxy's latency (bench/RESULTS.md,
 * "Reconnections"). test/integration/proxy.test.ts holds the pinned Kanidm
 * to keeping an idle connection longer than this.
 */
export const UPSTREAM_IDLE_MS = 50_000;

// SNI may not carry an IP; identity is checked against the configured host
// either way (the Host header seen by the proxy is the *public* name).
function tlsOptions(t: UpstreamTls) {
  return {
    secureContext: t.context,
    rejectUnauthorized: true,
    servername: isIP(t.host) ? '' : t.host,
    checkServerIdentity: (_name: string, cert: PeerCertificate) => checkServerIdentity(t.host, cert),
  };
}

/**
 * Keep-alive pool used by the reverse proxy (undici, HTTP/1.1): one TLS
 * handshake per pooled connection, reused for every request after it.
 */
export function proxyAgent(t: UpstreamTls, maxSockets = 256): Agent {
  // undici derives SNI from each request's Host header and drops a pooled
  // connection whenever that name changes; the proxy forwards the *public*
  // Host, so the name is pinned here instead (server/proxy.ts passes the
  // upstream host as the request's servername, this connector sends the
  // configured one, none for an IP).
  const tlsConnect = buildConnector(tlsOptions(t));
  const servername = isIP(t.host) ? undefined : t.host;
  const connect: buildConnector.connector = (opts, cb) => tlsConnect({ ...opts, servername }, cb);
  return new Agent({ connect, connections: maxSockets, keepAliveTimeout: UPSTREAM_IDLE_MS });
}

/** undici dispatcher for the wrapper's own calls (health checks, API calls). */
export function undiciAgent(t: UpstreamTls): Agent {
  return new Agent({ connect: tlsOptions(t), keepAliveTimeout: UPSTREAM_IDLE_MS });
}
