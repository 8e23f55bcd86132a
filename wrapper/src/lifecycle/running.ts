// What `kiwi-id run` hands the command line once it runs (one process, a
// primary with workers, or a worker), and the process glue around it:
// signals and exit codes.
import type { Logger } from 'pino';
import type { FrontDoor } from '../server/front-door.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Supervisor } from '../upstream/supervisor.js';

export interface Running {
  log: Logger;
  metrics: Metrics;
  /** Absent in a cluster worker (the primary supervises Kanidm). */
  supervisor?: Supervisor;
  /** Absent in a cluster primary (its workers serve the listener). */
  frontDoor?: FrontDoor;
  /** Drains, stops Kanidm, resolves when both are done. Idempotent. */
  shutdown(reason: string): Promise<void>;
  /** SIGHUP: the listener certificate on disk is served to new connections. */
  reloadTls(): void;
}

/** Process glue: signals and exit codes. */
export function handleSignals(running: Running): void {
  const stop = (signal: string) => {
    void running.shutdown(signal).then(
      () => process.exit(0),
      (err) => {
        running.log.error({ err_message: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: execa's signal-exit re-raises a signal once it holds
  // the last listener, which would kill the process mid-drain. A repeated
  // signal joins the shutdown already running.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => running.reloadTls());
  running.supervisor?.on('fatal', (err: Error) => {
    running.log.error({ err_message: err.message }, 'upstream cannot be started; exiting');
    void running.shutdown('upstream fatal').finally(() => process.exit(1));
  });
}
