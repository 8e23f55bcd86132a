// /metrics with workers: whichever worker is asked passes the scrape to the
// primary, which collects every worker's registry as JSON, adds its own and
// aggregates them (prom-client's AggregatorRegistry). A worker that does not
// answer within SCRAPE_TIMEOUT_MS is left out of that scrape.
import type { Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Metrics } from '../../telemetry/metrics.js';
import { SCRAPE_TIMEOUT_MS, type Message, type MetricJson } from './messages.js';

export class MetricsAggregation {
  private nextId = 0;
  private readonly collecting = new Map<number, { want: number; got: MetricJson[][]; done: () => void }>();

  constructor(
    private readonly own: Metrics,
    private readonly workers: () => Worker[],
    private readonly send: (w: Worker, m: Message) => void,
  ) {}

  /** The text exposition of every process's metrics. */
  async scrape(): Promise<string> {
    const id = this.nextId++;
    const workers = this.workers().filter((w) => w.isConnected());
    const got: MetricJson[][] = [await this.own.registry.getMetricsAsJSON()];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SCRAPE_TIMEOUT_MS);
      this.collecting.set(id, { want: workers.length, got, done: () => (clearTimeout(timer), resolve()) });
      if (workers.length === 0) resolve();
      workers.forEach((w) => this.send(w, { kiwi: 'collect', id }));
    });
    this.collecting.delete(id);
    return AggregatorRegistry.aggregate(got).metrics();
  }

  /** A worker's registry for scrape `id` (late answers, after the timeout, are dropped). */
  collected(id: number, metrics: MetricJson[]): void {
    const c = this.collecting.get(id);
    if (!c) return;
    c.got.push(metrics);
    if (c.got.length - 1 >= c.want) c.done();
  }
}
