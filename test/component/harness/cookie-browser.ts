import type { IssuerHarness } from './issuer.js';

/** A browser: follows redirects within the issuer, keeps cookies, stops at the first foreign URL. */
export class CookieBrowser {
  private readonly jar = new Map<string, string>();
  hops: string[] = [];
  urls: URL[] = [];

  constructor(private readonly h: IssuerHarness) {}

  async go(url: string, init: { method?: 'GET' | 'POST'; body?: string } = {}): Promise<{ url: URL; text: string; status: number }> {
    let next = new URL(url, this.h.issuer);
    let method = init.method ?? 'GET';
    let body = init.body;
    for (let i = 0; i < 20; i++) {
      if (next.origin !== this.h.issuer) return { url: next, text: '', status: 0 };
      this.hops.push(next.pathname);
      this.urls.push(next);
      const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const headers: Record<string, string> = cookie ? { cookie } : {};
      if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
      const res = await this.h.http(next.href, { method, headers, body });
      for (const c of ([] as string[]).concat(res.headers['set-cookie'] ?? [])) {
        const [pair] = c.split(';');
        const eq = pair!.indexOf('=');
        const [k, v] = [pair!.slice(0, eq).trim(), pair!.slice(eq + 1)];
        if (/expires=Thu, 01 Jan 1970/i.test(c) || v === '') this.jar.delete(k);
        else this.jar.set(k, v);
      }
      if (res.status < 300 || res.status >= 400) return { url: next, text: res.text, status: res.status };
      next = new URL(String(res.headers.location), next);
      method = 'GET';
      body = undefined;
    }
    throw new Error('redirect loop');
  }
}
