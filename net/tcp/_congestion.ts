/**
 * NewReno congestion control: slow start and congestion avoidance per RFC 5681 section 3.1, fast recovery per
 * RFC 6582. All quantities are bytes.
 */
export class NewReno {
  cwnd: number;
  ssthresh = Number.POSITIVE_INFINITY;
  mss: number;
  #acc = 0;

  constructor(mss: number) {
    this.mss = mss;
    this.cwnd = NewReno.initialWindow(mss);
  }

  /** RFC 6928 section 2: IW = min(10*MSS, max(2*MSS, 14600)). */
  static initialWindow(mss: number): number {
    return Math.min(10 * mss, Math.max(2 * mss, 14600));
  }

  /**
   * New data was acknowledged outside recovery. Slow start counts every acknowledged byte (RFC 3465 byte
   * counting without its L limit, as Linux's tcp_slow_start does: our driver coalesces ACKs by batch, so a
   * per-ACK cap would only slow us down); congestion avoidance adds one MSS per window acknowledged.
   */
  onAck(acked: number): void {
    if (this.cwnd < this.ssthresh) {
      this.cwnd = Math.min(this.cwnd + acked, Math.max(this.ssthresh, this.cwnd));
      return;
    }
    this.#acc += acked;
    if (this.#acc >= this.cwnd) {
      this.#acc -= this.cwnd;
      this.cwnd += this.mss;
    }
  }

  /** RFC 6582 section 3.2 steps 2-3: three duplicate ACKs; halve, then inflate by the three segments. */
  onEnterRecovery(flight: number): void {
    this.ssthresh = Math.max(flight / 2, 2 * this.mss);
    this.cwnd = this.ssthresh + 3 * this.mss;
    this.#acc = 0;
  }

  /** RFC 6582 section 3.2 step 4: each further duplicate ACK means a segment left the network. */
  onDupAckInRecovery(): void {
    this.cwnd += this.mss;
  }

  /** RFC 6582 section 3.2 step 5, partial ACK: deflate by what was acknowledged, add back one MSS. */
  onPartialAck(acked: number): void {
    this.cwnd = Math.max(this.mss, this.cwnd - acked + (acked >= this.mss ? this.mss : 0));
  }

  /** RFC 6582 section 3.2 step 5, full ACK: option (2), min(ssthresh, max(FlightSize, SMSS) + SMSS). */
  onExitRecovery(flight: number): void {
    this.cwnd = Math.min(this.ssthresh, Math.max(flight, this.mss) + this.mss);
  }

  /**
   * RFC 5681 section 3.1 equation (4) and the loss window: ssthresh is halved only on the first timeout of a
   * run (a segment already retransmitted by the timer keeps it constant).
   */
  onTimeout(flight: number, firstInRow: boolean): void {
    if (firstInRow) this.ssthresh = Math.max(flight / 2, 2 * this.mss);
    this.cwnd = this.mss;
    this.#acc = 0;
  }
}
