// The addresses config.toml names: a listener's host:port, the public issuer
// URL and Kanidm's origin. Each parser throws a plain Error saying what is
// wrong with the value; the section reading the key names file and key.
import net from 'node:net';

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** An IPv4 address or a DNS name. All-digit dotted names would pass the hostname rule, so they are judged as IPv4. */
export function isIpv4OrHostname(s: string): boolean {
  return /^[\d.]+$/.test(s) ? net.isIPv4(s) : HOSTNAME.test(s);
}

/** Splits "host:port" (IPv4, [IPv6] or hostname). */
export function parseListenAddr(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) {
    throw new Error(
      `${JSON.stringify(s)} is not host:port (use e.g. 0.0.0.0:443, [::]:443, id.example.com:443)`,
    );
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range 1-65535`);
  if (m[1] !== undefined) {
    if (!net.isIPv6(m[1])) throw new Error(`${JSON.stringify(m[1])} is not an IPv6 address`);
    return { host: m[1], port };
  }
  const host = m[2];
  if (!isIpv4OrHostname(host)) {
    throw new Error(`${JSON.stringify(host)} is not a valid IPv4 address or hostname`);
  }
  return { host, port };
}

export function parseHttpsUrl(s: string): URL {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new Error(`${JSON.stringify(s)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new Error(`${JSON.stringify(s)} must use https://`);
  if (url.username || url.password) throw new Error(`${JSON.stringify(s)} must not contain credentials`);
  if (s.includes('?') || s.includes('#')) {
    throw new Error(`${JSON.stringify(s)} must not contain a query or fragment`);
  }
  return url;
}

/** The issuer is compared byte-for-byte by OIDC clients, so it is kept exactly as written. */
export function checkIssuer(s: string): string {
  const url = parseHttpsUrl(s);
  if (s.endsWith('/')) throw new Error(`${JSON.stringify(s)} must not end with a slash`);
  // Kanidm's origin is the same public URL and owns the rest of the path space,
  // so the issuer endpoints live at the root.
  if (url.pathname !== '/') throw new Error(`${JSON.stringify(s)} must not contain a path`);
  return s;
}

export function upstreamOrigin(s: string): string {
  const url = parseHttpsUrl(s);
  if (url.pathname !== '/') throw new Error(`${JSON.stringify(s)} must not contain a path`);
  return url.origin;
}
