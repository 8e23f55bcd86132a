// A browser without a screen: a real cookie jar (paths, expiry, Secure,
// SameSite handled by tough-cookie), redirects followed while they stay on
// the origins it is told about, TLS verified against the given CAs. For
// flows where what matters is HTTP (codes, cookies, redirects), not a page.
import { CookieJar } from 'tough-cookie';
import { Agent, request } from 'undici';

export interface Step {
  url: URL;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export class HttpBrowser {
  readonly jar = new CookieJar();
  readonly visited: URL[] = [];

  constructor(
    private readonly dispatcher: Agent,
    /** Origins whose redirects are followed; the first other one ends the walk. */
    private readonly origins: string[],
  ) {}

  /** One request, cookies sent and stored; no redirect following. */
  async fetch(url: URL | string, init: { method?: string; body?: string; headers?: Record<string, string>; form?: Record<string, string>; json?: unknown } = {}): Promise<Step> {
    const u = new URL(url);
    const headers: Record<string, string> = { ...init.headers };
    const cookie = await this.jar.getCookieString(u.href);
    if (cookie) headers.cookie = cookie;
    let body = init.body;
    if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers['content-type'] = 'application/json';
    }
    const res = await request(u, { dispatcher: this.dispatcher, method: (init.method ?? (body ? 'POST' : 'GET')) as 'GET', headers, body });
    for (const c of ([] as string[]).concat(res.headers['set-cookie'] ?? [])) await this.jar.setCookie(c, u.href, { ignoreError: true });
    this.visited.push(u);
    return { url: u, status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  /** Follows redirects (as GET) while they stay on known origins; returns the last answer or the foreign URL. */
  async go(url: URL | string, init: Parameters<HttpBrowser['fetch']>[1] = {}): Promise<Step> {
    let step = await this.fetch(url, init);
    for (let i = 0; i < 20 && step.status >= 300 && step.status < 400 && step.headers.location; i++) {
      const next = new URL(String(step.headers.location), step.url);
      if (!this.origins.includes(next.origin)) return { url: next, status: 0, headers: {}, text: '' };
      step = await this.fetch(next);
    }
    return step;
  }
}
