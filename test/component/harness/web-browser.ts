// A browser over HTTP for flows that cross origins (Kiwi ID ↔ an upstream
// IdP): cookies kept per host and path as browsers do (ports do not separate
// cookies, so two issuers use different host names), redirects followed
// across the origins it is told to trust, stopping at any other origin (a
// service's redirect URI) without requesting it.
import { request, type Dispatcher } from 'undici';

interface StoredCookie {
  value: string;
  path: string;
}

export interface Page {
  url: URL;
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

export class WebBrowser {
  private readonly jar = new Map<string, Map<string, StoredCookie>>();
  readonly visited: URL[] = [];

  constructor(
    private readonly dispatcher: Dispatcher,
    /** Origins this browser actually loads; anything else ends navigation there. */
    private readonly origins: () => string[],
  ) {}

  private cookieHeader(url: URL): string {
    const host = this.jar.get(url.hostname);
    if (!host) return '';
    return [...host]
      .filter(([, c]) => url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : c.path + '/'))
      .map(([k, c]) => `${k}=${c.value}`)
      .join('; ');
  }

  private store(url: URL, setCookie: string | string[] | undefined): void {
    for (const line of ([] as string[]).concat(setCookie ?? [])) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      const attr = (n: string) => attrs.find((a) => a.toLowerCase().startsWith(n + '='))?.slice(n.length + 1);
      const path = attr('path') ?? '/';
      const gone = value === '' || attr('max-age') === '0' || /expires=Thu, 01 Jan 1970/i.test(line);
      let host = this.jar.get(url.hostname);
      if (!host) this.jar.set(url.hostname, (host = new Map()));
      if (gone) host.delete(name);
      else host.set(name, { value, path });
    }
  }

  hasCookie(host: string, prefix: string): boolean {
    return [...(this.jar.get(host)?.keys() ?? [])].some((k) => k.startsWith(prefix));
  }

  /** Loads `url` and follows redirects; `init` is for the first request only (a form post). */
  async go(
    url: string | URL,
    init: { method?: 'GET' | 'POST'; form?: Record<string, string>; stopAt?: (u: URL) => boolean } = {},
  ): Promise<Page> {
    let next = new URL(url);
    let method = init.method ?? 'GET';
    let body = init.form ? new URLSearchParams(init.form).toString() : undefined;
    for (let hop = 0; hop < 25; hop++) {
      // Not loaded: a foreign origin, or a URL the test wants to hold (e.g. to replay it).
      if (!this.origins().includes(next.origin) || (hop > 0 && init.stopAt?.(next))) return { url: next, status: 0, text: '', headers: {} };
      this.visited.push(next);
      const headers: Record<string, string> = {};
      const cookie = this.cookieHeader(next);
      if (cookie) headers.cookie = cookie;
      if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
      const res = await request(next, { dispatcher: this.dispatcher, method, headers, body });
      const text = await res.body.text();
      this.store(next, res.headers['set-cookie']);
      if (res.statusCode < 300 || res.statusCode >= 400 || !res.headers.location) {
        return { url: next, status: res.statusCode, text, headers: res.headers };
      }
      next = new URL(String(res.headers.location), next);
      method = 'GET';
      body = undefined;
    }
    throw new Error('redirect loop');
  }
}
