// The host of a configured URL in the form network calls take: WHATWG URL
// keeps an IPv6 literal in brackets ("[::1]"), which net.connect, TLS
// identity checks and net.isIP do not accept.
export function urlHost(url: string | URL): string {
  return (typeof url === 'string' ? new URL(url) : url).hostname.replace(/^\[(.*)\]$/, '$1');
}
