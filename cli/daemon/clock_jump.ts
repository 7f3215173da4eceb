/**
 * Sleep shows as a jump: while a laptop sleeps the monotonic clock stops (Linux CLOCK_MONOTONIC, which
 * `performance.now()` reads, does not count suspend) and the wall clock does not. Comparing how far each moved between
 * two checks tells a wake-up from sleep (or a big wall-clock step) at the next check, long before any timeout would.
 * Sans-IO: the driver passes both clocks' readings.
 */

/** A forward jump larger than this counts (timer lateness under load stays far below it). */
export const JUMP_THRESHOLD_MS = 3_000;

export class ClockJumpDetector {
  #wall: number;
  #mono: number;

  constructor(wall: number, mono: number, readonly thresholdMs = JUMP_THRESHOLD_MS) {
    this.#wall = wall;
    this.#mono = mono;
  }

  /**
   * How many ms the wall clock moved ahead of the monotonic one since the last check, when that is more than the
   * threshold; 0 otherwise. A backward step (a clock set back) is not sleep and counts as 0.
   */
  check(wall: number, mono: number): number {
    const jump = (wall - this.#wall) - (mono - this.#mono);
    this.#wall = wall;
    this.#mono = mono;
    return jump > this.thresholdMs ? jump : 0;
  }
}
