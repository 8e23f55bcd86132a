// `kiwi-id run` with `workers` > 1: one event loop per worker process, all
// accepting on the same listener (node:cluster hands out connections).
//
// primary   (primary.ts) supervises Kanidm (one Kanidm, whatever the worker
//           count), owns the state store's upkeep (sweep, record counts),
//           relays Kanidm's health to the workers, answers /metrics for all
//           processes (metrics.ts), and turns signals into orders:
//           SIGTERM/SIGINT → every worker drains and exits, then Kanidm stops;
//           SIGHUP → every worker reloads the listener certificate.
// workers   (worker.ts) serve the listener: front door, proxy, issuer. The
//           issuer keeps no state of its own in memory (sessions, grants,
//           codes, replay marks live in the shared SQLite store, WAL mode),
//           so any worker can answer any step of a flow.
//
// Why: one Node event loop tops out at about 1 / (CPU per request); a
// second worker uses the cores Kanidm and the clients leave idle
// (bench/proxy.ts, README). Each worker is a whole Node process, so memory
// grows with the count; `workers = 1` (the default) keeps one process.
//
// This file: what the two say to each other over node:cluster's IPC channel.
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

export type MetricJson = MetricObjectWithValues<MetricValue<string>>;

/** Messages between the primary and its workers (all carry `kiwi` so other IPC users are left alone). */
export type Message =
  | { kiwi: 'hello' } // worker → primary: listening for orders, send the upstream state
  | { kiwi: 'upstream'; healthy: boolean; reason?: string } // primary → workers
  | { kiwi: 'scrape'; id: number } // worker → primary: /metrics for all processes, please
  | { kiwi: 'scraped'; id: number; text: string } // primary → worker
  | { kiwi: 'collect'; id: number } // primary → worker: your registry as JSON
  | { kiwi: 'collected'; id: number; metrics: MetricJson[] } // worker → primary
  | { kiwi: 'drain' } // primary → worker
  | { kiwi: 'drained'; cut: number } // worker → primary, then it exits
  | { kiwi: 'reload-tls' }; // primary → worker

export const isMessage = (m: unknown): m is Message =>
  typeof m === 'object' && m !== null && typeof (m as { kiwi?: unknown }).kiwi === 'string';

/** How long the primary waits for the workers' registries; a stuck worker does not stall /metrics. */
export const SCRAPE_TIMEOUT_MS = 5_000;
