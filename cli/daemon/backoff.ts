/**
 * When the link to the traffic-manager reconnects: sans-IO, the driver passes the time. Every 250 ms while open
 * connections may still resume (the manager's default grace period of 30 s), so a link that is back is found within
 * a quarter second; then every second until a minute; then every 5 s; after 5 minutes the daemon gives up. An attempt
 * while the link is down costs nothing on the wire (no route: it fails at once), and one to a manager that is down
 * one refused TCP handshake.
 */

/** The first delay, then RESUME_MS until RESUME_WINDOW_MS, FAST_MAX_MS until SLOW_AFTER_MS, then SLOW_MS. */
export const FIRST_DELAYS_MS = [100] as const;
export const RESUME_MS = 250;
export const RESUME_WINDOW_MS = 30_000;
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
    if (down < RESUME_WINDOW_MS) return RESUME_MS;
    return down < SLOW_AFTER_MS ? FAST_MAX_MS : SLOW_MS;
  }
}
