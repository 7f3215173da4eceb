/**
 * When to re-apply tp's resolv.conf settings after another program rewrote the file, and when to stop (sans-IO: it
 * takes the time, and says what to do and until when). A DHCP lease renewal or a Wi-Fi change rewrites the file once
 * in a while: tp takes the new file as the new original and points it at tp again. A program that rewrites it again
 * and again (a second network manager, a VPN client with a loop of its own) must not be fought: after `maxReapplies`
 * re-applies within `windowMs`, tp backs off for `backoffMs`, leaving the file to that program, then looks once more.
 * Each back-off in a row doubles, up to `maxBackoffMs`; after a calm spell as long as that, it starts over.
 */

export interface RewriteBackoffOptions {
  /** Re-applies allowed within `windowMs` before backing off. Default 5. */
  maxReapplies?: number;
  /** Default 10,000 ms. */
  windowMs?: number;
  /** The first back-off. Default 30,000 ms. */
  backoffMs?: number;
  /** The longest back-off. Default 300,000 ms. */
  maxBackoffMs?: number;
}

export type RewriteDecision =
  /** Take the file as the new original and point it at tp again. */
  | { action: "reapply" }
  /** Stop re-applying until `untilMs`, then look again: `reapplies` were made within the window. */
  | { action: "back-off"; untilMs: number; reapplies: number; windowMs: number }
  /** Backing off already: look again at `untilMs`. */
  | { action: "wait"; untilMs: number };

export class RewriteBackoff {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #firstBackoffMs: number;
  readonly #maxBackoffMs: number;
  /** When each re-apply within the window was made. */
  #reapplies: number[] = [];
  #nextBackoffMs: number;
  #until: number | null = null;
  #lastRewrite: number | null = null;
  #backOffs = 0;

  constructor(options: RewriteBackoffOptions = {}) {
    this.#max = options.maxReapplies ?? 5;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#firstBackoffMs = options.backoffMs ?? 30_000;
    this.#maxBackoffMs = Math.max(options.maxBackoffMs ?? 300_000, this.#firstBackoffMs);
    this.#nextBackoffMs = this.#firstBackoffMs;
  }

  /** Another program rewrote the file; `now` in milliseconds (any monotonic origin). */
  rewritten(now: number): RewriteDecision {
    if (this.#until !== null && now < this.#until) return { action: "wait", untilMs: this.#until };
    // A calm spell: no rewrite for the longest back-off since the last one, or since the last back-off ended.
    const calmFrom = Math.max(this.#lastRewrite ?? -Infinity, this.#until ?? -Infinity);
    if (now - calmFrom >= this.#maxBackoffMs) this.#nextBackoffMs = this.#firstBackoffMs;
    this.#lastRewrite = now;
    this.#until = null;
    this.#reapplies = this.#reapplies.filter((t) => now - t < this.#windowMs);
    if (this.#reapplies.length >= this.#max) {
      const reapplies = this.#reapplies.length;
      this.#reapplies = [];
      this.#until = now + this.#nextBackoffMs;
      this.#nextBackoffMs = Math.min(this.#nextBackoffMs * 2, this.#maxBackoffMs);
      this.#backOffs++;
      return { action: "back-off", untilMs: this.#until, reapplies, windowMs: this.#windowMs };
    }
    this.#reapplies.push(now);
    return { action: "reapply" };
  }

  /** When the current back-off ends, or null when not backing off at `now`. */
  backingOffUntil(now: number): number | null {
    return this.#until !== null && now < this.#until ? this.#until : null;
  }

  /** How many times tp has backed off. */
  get backOffs(): number {
    return this.#backOffs;
  }
}
