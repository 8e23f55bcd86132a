// Waiting on a condition instead of sleeping: machines differ 2x in speed and
// CI shares its cores, so a test never assumes how long something takes. The
// bound only decides how long a broken test takes to fail, so it is generous.
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** What is awaited, for the failure message ("upstream healthy"). */
  what: string;
  /** Default 30 s. */
  timeoutMs?: number;
  /** Poll interval, default 20 ms. */
  intervalMs?: number;
  /** Extra context appended to the failure message (e.g. a process's output). */
  detail?: () => string;
  /** An error of `cond` that means it will never become true (e.g. the process exited): fail at once. */
  fatal?: (err: Error) => boolean;
}

/**
 * Resolves with the first truthy value of `cond` (polled; a throw counts as
 * "not yet"), or rejects after `timeoutMs` naming what was awaited.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, o: WaitOptions): Promise<NonNullable<T>> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
      if (o.fatal?.(err as Error)) break;
    }
    if (Date.now() >= end) break;
    await sleep(o.intervalMs ?? 20);
  }
  const why = last ? ` (last error: ${(last as Error).message ?? last})` : '';
  const gave = Date.now() >= end ? `timed out after ${timeoutMs} ms waiting for` : 'gave up waiting for';
  throw new Error(`${gave} ${o.what}${why}${o.detail ? '\n' + o.detail() : ''}`);
}

/** An event from an emitter, bounded the same way. */
export function nextEvent<T = unknown>(emitter: NodeJS.EventEmitter, event: string, o: { what?: string; timeoutMs?: number } = {}): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const onEvent = (v: T) => {
      clearTimeout(t);
      resolve(v);
    };
    const t = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${o.what ?? `event "${event}"`}`));
    }, timeoutMs);
    emitter.once(event, onEvent);
  });
}
