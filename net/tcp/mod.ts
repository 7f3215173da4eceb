/**
 * tp's userspace TCP: one `TcpConnection` per connection the workstation's apps open to a cluster address, so that
 * only payloads travel on. Sans-IO: segments (`TcpRepr`, from `net/wire/tcp_repr.ts`) and the time in milliseconds
 * go in; segments and the next deadline come out. Nothing here reads a clock, sets a timer or touches a socket.
 *
 * ## Who drives it
 *
 * The router (`net/router/router.ts`) owns the connection table (keyed by the packet's 5-tuple), the timer heap
 * (`net/router/_deadlines.ts`) and the clock, and turns segments into packets:
 *
 * ```ts
 * // A bare SYN that matches no connection (or `conn.reopenedBy(seg)` for a pair in TIME-WAIT):
 * const conn = TcpConnection.fromSyn(seg, now, { config, counters, wake: (c) => pollSoon(c) }); // SYN-HELD
 * // Any other segment of a known connection:
 * conn.input(seg, now);
 * // Then, and at conn.nextDeadline(), and after owner calls (they call `wake`):
 * conn.poll(now, (seg) => writePacket(seg));  // build IP + TCP now: seg and seg.payload are reused after return
 * const ev = conn.takeEvents();               // TcpEvent bits: Incoming, Readable, Writable, PeerFin, Reset, Closed
 * // The owner answers Incoming with conn.accept() (SYN-ACK) or conn.refuse() (RST, or { reply: "none" } and ICMP),
 * // reads with conn.peek()/consume() (unconsumed bytes shrink the window), writes with conn.write(bytes) (a short
 * // write waits for Writable), half-closes with conn.shutdownWrite(), and aborts with conn.abort().
 * // A segment for no connection gets rstForUnmatched(seg) (RFC 9293 section 3.10.7.1).
 * ```
 *
 * `TcpConnection.connect` opens actively (SYN-SENT): the tests and the seeded simulation (`_sim.ts`) run two stacks
 * against each other with it; the router only opens passively.
 *
 * ## Behaviour
 * - States per RFC 9293 (`TcpState`), changed only by `setState` in `_tcb.ts`; deferred accept is the
 *   SYN-HELD state.
 * - Options: MSS, window scale (RFC 7323), SACK-permitted and SACK blocks (RFC 2018), timestamps (RFC 7323) for
 *   RTT measurement.
 * - Send: RTO per RFC 6298 with backoff, fast retransmit on three duplicate ACKs, NewReno fast recovery
 *   (RFC 6582) retransmitting SACK holes first, persist timer with zero-window probes, Nagle off (writes
 *   coalesce until the next poll).
 * - Receive: out-of-order reassembly in the receive buffer itself, SACK blocks, delayed ACKs (40 ms / two full
 *   segments), a window that closes while the owner does not consume and a window update when it does.
 * - Close: FIN both ways with half-close, RST both ways (RFC 5961 challenge ACKs), a short TIME-WAIT (see
 *   `DEFAULTS.timeWaitMs`) that a new SYN may end (`reopenedBy`, RFC 6191), keepalive (off unless configured).
 * - Memory: per-connection send and receive limits (rings that grow on demand); drops are counted in
 *   `TcpCounters`, shared by the router's connections.
 */
export { type Emit, TcpConnection, type TcpConnectionInit, type TcpInfo, type TcpPorts } from "./connection.ts";
export {
  DEFAULTS,
  newTcpCounters,
  resolveConfig,
  type TcpConfig,
  type TcpCounters,
  type TcpError,
  TcpEvent,
  type TcpKeepalive,
  type TcpOptions,
  type TcpState,
} from "./options.ts";
export { rstForUnmatched } from "./reset.ts";
export { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax, seqMin } from "./seq.ts";
