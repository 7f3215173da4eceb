/**
 * tp's userspace TCP endpoint: terminates the workstation's TCP connections so that only payloads travel on.
 * Sans-IO: segments (`TcpRepr`, from `net/wire/tcp_repr.ts`) and the time in milliseconds go in; segments and
 * the next deadline come out. Nothing here reads a clock, sets a timer or touches a socket.
 *
 * ## How the router drives it
 *
 * ```ts
 * const tcp = new TcpEndpoint<Flow>({
 *   mss: 65495 - 40,                         // or 1460 without TUN offload
 *   emit: (flow, seg) => sendToTun(flow, seg), // build IP + TCP now: seg and seg.payload are reused after return
 *   onEvents: (conn, ev, flow) => {
 *     if (ev & TcpEvent.Incoming) dialCluster(flow).then(
 *       () => { conn.accept(); tcp.poll(now()) },  // SYN-ACK only once the cluster side is connected
 *       () => { conn.refuse(); tcp.poll(now()) },  // RST; or refuse({ reply: "none" }) and send ICMP yourself
 *     );
 *     if (ev & TcpEvent.Readable) {             // bytes from the app: forward, then release them
 *       const v = conn.peek(); const n = tunnel.trySend(v); conn.consume(n); // unconsumed bytes shrink the window
 *     }
 *     if (ev & TcpEvent.PeerFin && conn.eof) tunnel.closeWrite();
 *     if (ev & TcpEvent.Writable) tunnel.resume(); // send buffer has room again after a short write
 *     if (ev & (TcpEvent.Reset | TcpEvent.Closed)) tunnel.close(conn.error);
 *   },
 * });
 * // For each batch of packets read from the TUN:
 * for (const p of batch) tcp.input(flowKey(p), flowOf(p), p.tcp, now);  // "reset-sent" etc. for counters
 * let deadline = tcp.poll(now);                                         // events, timers and output
 * // Data from the cluster:  const taken = conn.write(bytes); (taken < bytes.length: wait for Writable)
 * // Cluster closed its side: conn.shutdownWrite();   cluster failed: conn.abort();
 * // Owner calls outside onEvents are flushed by the next tcp.poll(now); wake up at `deadline` as well.
 * ```
 *
 * `TcpConnection` can also be driven alone: `conn.input(seg, now)`, `conn.poll(now, emit)`,
 * `conn.nextDeadline()`, `conn.takeEvents()` (the tests and the benchmark do this).
 *
 * ## Behaviour
 * - States per RFC 9293 (`TcpState`), changed only by `setState` in `_tcb.ts`; deferred accept is the
 *   SYN-HELD state. Active open too (`TcpEndpoint.connect`).
 * - Options: MSS, window scale (RFC 7323), SACK-permitted and SACK blocks (RFC 2018), timestamps (RFC 7323) for
 *   RTT measurement.
 * - Send: RTO per RFC 6298 with backoff, fast retransmit on three duplicate ACKs, NewReno fast recovery
 *   (RFC 6582) retransmitting SACK holes first, persist timer with zero-window probes, Nagle off (writes
 *   coalesce until the next poll).
 * - Receive: out-of-order reassembly in the receive buffer itself, SACK blocks, delayed ACKs (40 ms / two full
 *   segments), a window that closes while the owner does not consume and a window update when it does.
 * - Close: FIN both ways with half-close, RST both ways (RFC 5961 challenge ACKs), a short TIME-WAIT (see
 *   `DEFAULTS.timeWaitMs`), keepalive (off unless configured), RSTs for unmatched segments (`rstForUnmatched`).
 * - Memory: per-connection send and receive limits (rings that grow on demand), `maxConnections`; drops are
 *   counted in `TcpCounters`.
 */
export { type TcpDisposition, TcpEndpoint, type TcpEndpointOptions } from "./endpoint.ts";
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
