/** Configuration, events, states and counters of the TCP endpoint. */
import { INITIAL_RTO_MS, MAX_RTO_MS, MIN_RTO_MS } from "./_rtt.ts";

/**
 * RFC 9293 states of one connection, plus `SYN-HELD`: tp's deferred accept. A SYN that arrives at the listening
 * endpoint creates a connection in SYN-HELD (RFC 9293 would stay in LISTEN, having sent nothing); the owner's
 * `accept()` moves it to SYN-RECEIVED and sends the SYN-ACK, `refuse()` closes it. LISTEN is the endpoint itself
 * (one listener for every address and port routed to us), so no connection is ever in LISTEN: "return to LISTEN"
 * in the RFC means the connection is dropped while the endpoint keeps listening.
 */
export type TcpState =
  | "CLOSED"
  | "SYN-HELD"
  | "SYN-SENT"
  | "SYN-RECEIVED"
  | "ESTABLISHED"
  | "FIN-WAIT-1"
  | "FIN-WAIT-2"
  | "CLOSE-WAIT"
  | "CLOSING"
  | "LAST-ACK"
  | "TIME-WAIT";

/** Bits of the event mask a connection raises for its owner. */
export const TcpEvent = {
  /** A SYN is held: call `accept()` or `refuse()`. */
  Incoming: 1,
  /** The handshake completed. */
  Established: 2,
  /** New in-order bytes can be read. */
  Readable: 4,
  /** Send buffer space freed after a short `write()`. */
  Writable: 8,
  /** The peer sent FIN: after the readable bytes, its stream ends. */
  PeerFin: 16,
  /** The connection failed; `error` says why. */
  Reset: 32,
  /** The connection reached CLOSED; the endpoint forgets it. */
  Closed: 64,
} as const;

/** Why a connection ended abnormally. */
export type TcpError = "refused" | "reset" | "timeout" | "aborted";

export interface TcpKeepalive {
  /** Idle time before the first probe (RFC 1122 4.2.3.6: no less than two hours by default; ours is the owner's). */
  idleMs: number;
  intervalMs: number;
  /** Unanswered probes before the connection times out. */
  probes: number;
}

export interface TcpOptions {
  /**
   * Largest payload we advertise (MSS option) and send. 1460 suits a 1500-byte MTU; the daemon's TUN has MTU 65535,
   * hence up to 65495 (65535 minus the IPv4 and TCP headers).
   */
  mss?: number;
  /** Per-connection cap on bytes written and not yet acknowledged. */
  sendBufferLimit?: number;
  /** Per-connection cap on bytes received and not yet consumed (the receive window). */
  recvBufferLimit?: number;
  /** Offer/accept the timestamps option (RFC 7323 section 3) for RTT measurement. */
  timestamps?: boolean;
  /** Offer/accept SACK (RFC 2018). */
  sack?: boolean;
  /** Offer/accept window scaling (RFC 7323 section 2). */
  windowScaling?: boolean;
  /** Delayed ACK timeout; RFC 1122 4.2.3.2 and RFC 9293 3.8.6.3 require under 500 ms. */
  delayedAckMs?: number;
  initialRtoMs?: number;
  minRtoMs?: number;
  maxRtoMs?: number;
  /** Retransmission timeouts in a row before giving up (Linux tcp_retries2 is 15). */
  maxRetries?: number;
  /** SYN / SYN-ACK retransmissions before giving up (Linux tcp_syn_retries is 6). */
  synRetries?: number;
  /** TIME-WAIT duration; see DEFAULTS for why it is short. */
  timeWaitMs?: number;
  /** How long a held SYN waits for `accept()`/`refuse()` before it is refused. */
  heldSynTimeoutMs?: number;
  /** Keepalive probes (RFC 9293 3.8.4); off unless given. */
  keepalive?: TcpKeepalive;
  /** Out-of-order blocks kept per connection; segments that would need more are dropped and counted. */
  maxOooBlocks?: number;
  /** Random 32-bit integers for initial sequence numbers (RFC 9293 3.4.1); crypto by default. */
  random?: () => number;
  /** Receives `A=>B` state transition lines and other debug text. */
  log?: (line: string) => void;
}

export interface TcpConfig extends Required<Omit<TcpOptions, "keepalive" | "log">> {
  keepalive: TcpKeepalive | null;
  log: ((line: string) => void) | null;
}

function cryptoRandom(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

export const DEFAULTS: Omit<TcpConfig, "random" | "keepalive" | "log"> = {
  mss: 1460,
  sendBufferLimit: 1 << 20,
  recvBufferLimit: 1 << 20,
  timestamps: true,
  sack: true,
  windowScaling: true,
  /** Linux TCP_DELACK_MIN (include/net/tcp.h). */
  delayedAckMs: 40,
  initialRtoMs: INITIAL_RTO_MS,
  minRtoMs: MIN_RTO_MS,
  maxRtoMs: MAX_RTO_MS,
  maxRetries: 15,
  synRetries: 6,
  /**
   * RFC 9293 asks for 2*MSL (minutes). tp terminates connections from the local kernel over a TUN: there is no
   * network that could deliver an old duplicate minutes later, so TIME-WAIT only has to outlive a retransmission
   * of the peer's FIN (whose RTO is at least 200 ms on Linux) so that our last ACK can be repeated. Two seconds
   * does that without keeping thousands of table entries alive for a proxy that closes many short connections.
   */
  timeWaitMs: 2000,
  heldSynTimeoutMs: 30_000,
  maxOooBlocks: 32,
};

export function resolveConfig(o: TcpOptions = {}): TcpConfig {
  const c: TcpConfig = {
    mss: o.mss ?? DEFAULTS.mss,
    sendBufferLimit: o.sendBufferLimit ?? DEFAULTS.sendBufferLimit,
    recvBufferLimit: o.recvBufferLimit ?? DEFAULTS.recvBufferLimit,
    timestamps: o.timestamps ?? DEFAULTS.timestamps,
    sack: o.sack ?? DEFAULTS.sack,
    windowScaling: o.windowScaling ?? DEFAULTS.windowScaling,
    delayedAckMs: o.delayedAckMs ?? DEFAULTS.delayedAckMs,
    initialRtoMs: o.initialRtoMs ?? DEFAULTS.initialRtoMs,
    minRtoMs: o.minRtoMs ?? DEFAULTS.minRtoMs,
    maxRtoMs: o.maxRtoMs ?? DEFAULTS.maxRtoMs,
    maxRetries: o.maxRetries ?? DEFAULTS.maxRetries,
    synRetries: o.synRetries ?? DEFAULTS.synRetries,
    timeWaitMs: o.timeWaitMs ?? DEFAULTS.timeWaitMs,
    heldSynTimeoutMs: o.heldSynTimeoutMs ?? DEFAULTS.heldSynTimeoutMs,
    maxOooBlocks: o.maxOooBlocks ?? DEFAULTS.maxOooBlocks,
    random: o.random ?? cryptoRandom,
    keepalive: o.keepalive ?? null,
    log: o.log ?? null,
  };
  if (!(c.mss >= 64 && c.mss <= 65495)) throw new RangeError(`MSS must be in 64..65495, got ${c.mss}`);
  if (!(c.recvBufferLimit >= c.mss && c.recvBufferLimit <= 1 << 30)) {
    throw new RangeError(`Receive buffer limit must be in MSS..2^30, got ${c.recvBufferLimit}`);
  }
  if (!(c.sendBufferLimit >= 1 && c.sendBufferLimit <= 1 << 30)) {
    throw new RangeError(`Send buffer limit must be in 1..2^30, got ${c.sendBufferLimit}`);
  }
  return c;
}

/** Named counters: drops and unusual events are counted here, never thrown. Shared by the router's connections. */
export interface TcpCounters {
  segmentsIn: number;
  segmentsOut: number;
  connectionsOpened: number;
  connectionsRefused: number;
  heldSynTimeouts: number;
  duplicateSyns: number;
  resetsSent: number;
  resetsReceived: number;
  outOfWindow: number;
  challengeAcks: number;
  ackOfUnsent: number;
  retransmittedSegments: number;
  fastRetransmits: number;
  rtoExpiries: number;
  timeouts: number;
  outOfOrderSegments: number;
  outOfOrderOverflowDrops: number;
  /** SACK blocks not recorded because the sender's scoreboard kept its most ranges (`_sack.ts`). */
  sackBlocksIgnored: number;
  zeroWindowProbes: number;
  windowUpdates: number;
  keepaliveProbes: number;
  dataAfterFinDrops: number;
}

export function newTcpCounters(): TcpCounters {
  return {
    segmentsIn: 0,
    segmentsOut: 0,
    connectionsOpened: 0,
    connectionsRefused: 0,
    heldSynTimeouts: 0,
    duplicateSyns: 0,
    resetsSent: 0,
    resetsReceived: 0,
    outOfWindow: 0,
    challengeAcks: 0,
    ackOfUnsent: 0,
    retransmittedSegments: 0,
    fastRetransmits: 0,
    rtoExpiries: 0,
    timeouts: 0,
    outOfOrderSegments: 0,
    outOfOrderOverflowDrops: 0,
    sackBlocksIgnored: 0,
    zeroWindowProbes: 0,
    windowUpdates: 0,
    keepaliveProbes: 0,
    dataAfterFinDrops: 0,
  };
}
