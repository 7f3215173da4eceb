/** Round-trip time estimation and the retransmission timeout, per RFC 6298. */

/** RFC 6298 section 2.1: the RTO before any sample is one second. */
export const INITIAL_RTO_MS = 1000;
/**
 * RFC 6298 section 2.4 asks for at least one second; like Linux (`TCP_RTO_MIN`, include/net/tcp.h, 200 ms) we use
 * less, since tp's peer is the local kernel across a TUN where round trips are well under a millisecond.
 */
export const MIN_RTO_MS = 200;
/** RFC 6298 section 2.5: a maximum of at least 60 seconds may be placed on the RTO. */
export const MAX_RTO_MS = 60_000;
/** RFC 6298 section 2: clock granularity G; our clock counts milliseconds. */
const CLOCK_GRANULARITY_MS = 1;

export class RttEstimator {
  srtt = 0;
  rttvar = 0;
  rto: number;
  hasSample = false;
  readonly minRto: number;
  readonly maxRto: number;

  constructor(initialRto = INITIAL_RTO_MS, minRto = MIN_RTO_MS, maxRto = MAX_RTO_MS) {
    this.rto = initialRto;
    this.minRto = minRto;
    this.maxRto = maxRto;
  }

  /** RFC 6298 sections 2.2 and 2.3: folds in one measurement `r` (milliseconds). */
  sample(r: number): void {
    if (!this.hasSample) {
      this.srtt = r;
      this.rttvar = r / 2;
      this.hasSample = true;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    const rto = this.srtt + Math.max(CLOCK_GRANULARITY_MS, 4 * this.rttvar);
    this.rto = Math.min(this.maxRto, Math.max(this.minRto, rto));
  }

  /** RFC 6298 section 5.5: the timer expired, so the RTO doubles (up to the maximum). */
  backoff(): void {
    this.rto = Math.min(this.maxRto, this.rto * 2);
  }
}
