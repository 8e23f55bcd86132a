// A steady HTTP load for fault tests: `connections` workers, each sending one
// request after another and recording what came back (status, Retry-After,
// or the error), with monotonic timestamps so outcomes can be placed around
// a kill or a signal. Keep-alive workers share one pool; "fresh" workers
// open a new TLS connection per request (handshakes during a TLS reload).
// Every request is bounded (headers and body timeouts), so a hang shows up
// as an error, never as a stuck test.
import { performance } from 'node:perf_hooks';
import { Agent, Pool } from 'undici';

export interface LoadRequest {
  path: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

export interface Outcome {
  /** performance.now() when the request was sent and when it ended. */
  sent: number;
  ended: number;
  path: string;
  fresh: boolean;
  status?: number;
  retryAfter?: string;
  /** Error code (or message) when no HTTP answer came back. */
  error?: string;
}

export interface LoadOptions {
  base: string;
  ca: Buffer | Buffer[];
  /** Workers on kept-alive connections. */
  connections: number;
  /** Workers that open a new connection per request. */
  freshConnections?: number;
  /** What worker `w` sends as its `n`th request. */
  next: (w: number, n: number) => LoadRequest;
  /** Bound on headers and on the body of one response. Default 15 s. */
  timeoutMs?: number;
}

export class Load {
  readonly outcomes: Outcome[] = [];
  private running = false;
  private workers: Promise<void>[] = [];
  private readonly pool: Pool;
  private readonly fresh: Agent;

  constructor(private readonly o: LoadOptions) {
    const timeouts = { headersTimeout: o.timeoutMs ?? 15_000, bodyTimeout: o.timeoutMs ?? 15_000 };
    this.pool = new Pool(o.base, { connections: o.connections, connect: { ca: o.ca }, ...timeouts });
    this.fresh = new Agent({ connect: { ca: o.ca }, ...timeouts });
  }

  start(): this {
    this.running = true;
    const total = this.o.connections + (this.o.freshConnections ?? 0);
    for (let w = 0; w < total; w++) this.workers.push(this.worker(w, w >= this.o.connections));
    return this;
  }

  /** Stops sending, waits for the requests in flight, closes the connections. */
  async stop(): Promise<Outcome[]> {
    this.running = false;
    await Promise.all(this.workers);
    await Promise.all([this.pool.close(), this.fresh.close()]);
    return this.outcomes;
  }

  /** Waits (bounded) until `n` more outcomes matching `pred` have come in after now. */
  async until(what: string, pred: (o: Outcome) => boolean, n = 1, ms = 60_000): Promise<void> {
    const from = this.outcomes.length;
    const end = Date.now() + ms;
    while (this.outcomes.slice(from).filter(pred).length < n) {
      if (Date.now() > end) throw new Error(`load: no ${what} within ${ms} ms (${summarize(this.outcomes.slice(from))})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async worker(w: number, fresh: boolean): Promise<void> {
    for (let n = 0; this.running; n++) {
      const req = this.o.next(w, n);
      const sent = performance.now();
      const outcome: Outcome = { sent, ended: sent, path: req.path, fresh };
      try {
        const opts = { path: req.path, method: req.method ?? 'GET', headers: req.headers, body: req.body };
        const res = fresh
          ? await this.fresh.request({ ...opts, origin: this.o.base, reset: true })
          : await this.pool.request(opts);
        await res.body.text();
        outcome.status = res.statusCode;
        const ra = res.headers['retry-after'];
        if (ra !== undefined) outcome.retryAfter = String(ra);
      } catch (err) {
        outcome.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      }
      outcome.ended = performance.now();
      this.outcomes.push(outcome);
      // A refused connection or a 503 comes back at once; pace the retries a
      // little (real clients honour Retry-After) so the test does not starve
      // the machine it measures.
      if (outcome.error || outcome.status === 503) await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** "200×1234 503×12 ECONNRESET×1": what a set of outcomes came to. */
export function summarize(outcomes: Outcome[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) {
    const k = o.error ?? String(o.status);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k}×${n}`).join(' ') || 'nothing';
}
