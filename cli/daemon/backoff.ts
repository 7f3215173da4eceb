/**
 * When the link to the traffic-manager reconnects: sans-IO, the driver passes the time. Quick at first, and never
 * more than 1 s apart during the first minute of an outage, so a link (or a manager) that is back is found within a
 * second; then every 5 s; after 5 minutes the daemon gives up.
 */

/** The first delays, then FAST_MAX_MS until SLOW_AFTER_MS, then SLOW_MS until GIVE_UP_AFTER_MS. */
export const FIRST_DELAYS_MS = [100, 250, 500] as const;
export const FAST_MAX_MS = 1_000;
export const SLOW_AFTER_MS = 60_000;
export const SLOW_MS = 5_000;
export const GIVE_UP_AFTER_MS = 300_000;

export class ReconnectBackoff {
  #attempt = 0;

  /** `since`: when the link broke, on the driver's (monotonic) clock. */
  constructor(readonly since: number) {}

  /** Attempts made so far. */
  get attempts(): number {
    return this.#attempt;
  }

  /** How long to wait before the next attempt, or null to give up. */
  next(now: number): number | null {
    const down = now - this.since;
    if (down >= GIVE_UP_AFTER_MS) return null;
    const i = this.#attempt++;
    if (i < FIRST_DELAYS_MS.length) return FIRST_DELAYS_MS[i]!;
    return down < SLOW_AFTER_MS ? FAST_MAX_MS : SLOW_MS;
  }
}
