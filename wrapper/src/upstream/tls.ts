// TLS toward Kanidm: its own CA is the only trust root and the certificate
// must name the configured upstream host. Verification is never turned off.
import { readFileSync } from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { isIP } from 'node:net';
import { Agent, buildConnector } from 'undici';

export interface UpstreamTls {
  ca: Buffer;
  host: string; // hostname or IP from upstream_addr
}

export function upstreamTls(upstreamAddr: string, caPath: string): UpstreamTls {
  return { ca: readFileSync(caPath), host: new URL(upstreamAddr).hostname.replace(/^\[|\]$/g, '') };
}

// SNI may not carry an IP; identity is checked against the configured host
// either way (the Host header seen by the proxy is the *public* name).
function tlsOptions(t: UpstreamTls) {
  return {
    ca: t.ca,
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
  return new Agent({ connect, connections: maxSockets, keepAliveTimeout: 10_000 });
}

/** undici dispatcher for the wrapper's own calls (health checks, API calls). */
export function undiciAgent(t: UpstreamTls): Agent {
  return new Agent({ connect: tlsOptions(t), keepAliveTimeout: 10_000 });
}
