// Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): timestamps that
// follow wall-clock time, never go backwards on one node, and order every event that causally
// follows another after it, even when node clocks disagree a little.
//
// A timestamp is encoded as one string that sorts like the clock:
//   <wall ms, 15 digits>.<counter, 6 digits>.<node_id>
// so comparing two timestamps is comparing two strings, and the node id breaks ties between
// different nodes deterministically (needed for last-writer-wins to converge).

export interface HlcParts {
  readonly wall: number;
  readonly counter: number;
  readonly node: string;
}

const WALL_DIGITS = 15;
const COUNTER_DIGITS = 6;
const MAX_COUNTER = 10 ** COUNTER_DIGITS - 1;
const FORMAT = /^(\d{15})\.(\d{6})\.(.+)$/;

export function encodeHlc(p: HlcParts): string {
  return `${String(p.wall).padStart(WALL_DIGITS, '0')}.${String(p.counter).padStart(COUNTER_DIGITS, '0')}.${p.node}`;
}

export function decodeHlc(s: string): HlcParts {
  const m = FORMAT.exec(s);
  if (!m) throw new Error(`not a hybrid logical clock timestamp: ${JSON.stringify(s).slice(0, 80)}`);
  return { wall: Number(m[1]), counter: Number(m[2]), node: m[3]! };
}

export function isHlc(s: unknown): s is string {
  return typeof s === 'string' && FORMAT.test(s);
}

/** Total order of encoded timestamps (string order is clock order). */
export function compareHlc(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxHlc(a: string | null | undefined, b: string | null | undefined): string | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return a >= b ? a : b;
}

/** The wall-clock milliseconds of an encoded timestamp. */
export function hlcWall(s: string): number {
  return decodeHlc(s).wall;
}

export class ClockDriftError extends Error {
  constructor(readonly aheadMs: number) {
    super(`remote clock is ${aheadMs} ms ahead of ours (more than the allowed drift)`);
    this.name = 'ClockDriftError';
  }
}

export class HybridClock {
  private wall = 0;
  private counter = 0;

  constructor(
    readonly node: string,
    private readonly now: () => number = Date.now,
    /** A remote timestamp further ahead than this is refused rather than adopted. */
    private readonly maxDriftMs = 60_000,
  ) {
    if (!node) throw new Error('HybridClock: node id required');
  }

  /** Timestamp for a local event (a write). */
  tick(): string {
    const pt = this.now();
    if (pt > this.wall) {
      this.wall = pt;
      this.counter = 0;
    } else {
      this.bump();
    }
    return encodeHlc({ wall: this.wall, counter: this.counter, node: this.node });
  }

  /**
   * Merges a timestamp seen in a message so later local events order after it. Throws
   * ClockDriftError (and changes nothing) when it is implausibly far in the future, so one bad
   * clock cannot drag the whole cluster's timestamps ahead.
   */
  receive(remote: string): void {
    const r = decodeHlc(remote);
    const pt = this.now();
    if (r.wall - pt > this.maxDriftMs) throw new ClockDriftError(r.wall - pt);
    const wall = Math.max(this.wall, r.wall, pt);
    let counter: number;
    if (wall === this.wall && wall === r.wall) counter = Math.max(this.counter, r.counter) + 1;
    else if (wall === this.wall) counter = this.counter + 1;
    else if (wall === r.wall) counter = r.counter + 1;
    else counter = 0;
    this.wall = wall;
    this.counter = counter;
    if (this.counter > MAX_COUNTER) {
      this.wall += 1;
      this.counter = 0;
    }
  }

  /** The last timestamp handed out or received (for persistence across restarts). */
  get last(): string {
    return encodeHlc({ wall: this.wall, counter: this.counter, node: this.node });
  }

  /** Restores the clock after a restart so it never hands out a timestamp it used before. */
  restore(last: string | null | undefined): void {
    if (!last) return;
    const p = decodeHlc(last);
    if (p.wall > this.wall || (p.wall === this.wall && p.counter > this.counter)) {
      this.wall = p.wall;
      this.counter = p.counter;
    }
  }

  private bump(): void {
    if (this.counter >= MAX_COUNTER) {
      // A million events in one millisecond: borrow the next millisecond rather than overflow.
      this.wall += 1;
      this.counter = 0;
    } else {
      this.counter += 1;
    }
  }
}
