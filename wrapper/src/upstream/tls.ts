// TLS toward Kanidm: its own CA is the only trust root and the certificate
// must name the configured upstream host. Verification is never turned off.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { isIP } from 'node:net';
import { Agent } from 'undici';

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

/** Keep-alive pool used by the reverse proxy. */
export function proxyAgent(t: UpstreamTls, maxSockets = 256): https.Agent {
  return new https.Agent({ keepAlive: true, maxSockets, maxFreeSockets: 64, ...tlsOptions(t) });
}

/** undici dispatcher for the wrapper's own calls (health checks, API calls). */
export function undiciAgent(t: UpstreamTls): Agent {
  return new Agent({ connect: tlsOptions(t), keepAliveTimeout: 10_000 });
}
