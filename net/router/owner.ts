/**
 * The contract between the router (which terminates the workstation's TCP and UDP on the TUN) and its owner (the
 * daemon, which carries each connection's payload to the cluster). The router knows nothing of tunnels; the owner
 * knows nothing of segments.
 *
 * Directions: **inbound** is from the TUN (the workstation's apps) towards the cluster; **outbound** is from the
 * cluster towards the TUN.
 */

/** A connection's or flow's addresses, as the app sees them. Addresses are text (dotted IPv4, RFC 5952 IPv6). */
export interface Flow {
  family: 4 | 6;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
}

/** Why the cluster side could not be reached; the router answers the app accordingly. */
export type RefuseReason =
  /** The destination refused: the app gets a TCP RST ("Connection refused") or an ICMP port unreachable (UDP). */
  | "refused"
  /** No route, or the destination is not allowed: ICMP host unreachable (administratively prohibited for denied). */
  | "unreachable"
  | "denied"
  /** The dial timed out: ICMP host unreachable, so the app stops waiting. */
  | "timeout";

/**
 * One TCP connection from an app, as the owner sees it. Created held (the SYN is not answered) and handed to
 * `RouterOwner.openTcp`; the owner calls `accept` once the cluster side connected, or `refuse`.
 */
export interface TcpSocket {
  readonly flow: Flow;
  /** Sends the SYN-ACK: the app sees "connected". Only valid while held. */
  accept(): void;
  /** Answers the held SYN with an RST (refused) or an ICMP unreachable (the other reasons). */
  refuse(reason: RefuseReason): void;

  /**
   * Outbound payload for the app. Returns how many bytes the connection's send buffer took (0 .. data.length);
   * when it took less, the owner stops reading its tunnel until `onWritable` fires. The router copies what it takes.
   */
  write(data: Uint8Array): number;
  /** No more outbound payload (the cluster side half-closed): a FIN to the app once the buffer drains. */
  end(): void;
  /** Resets the connection: an RST to the app; no more callbacks but `onClose`. */
  abort(): void;
  /** The owner can take inbound payload again after `onData` returned false. */
  resume(): void;

  /**
   * Inbound payload from the app, in order. Return true when taken (the receive window reopens), false to leave it
   * in the receive buffer: the window then closes as the app keeps sending, until the owner calls `resume`, when
   * the router calls `onData` again with what is buffered. The array is only valid during the call.
   */
  onData: (data: Uint8Array) => boolean;
  /** The send buffer has room again after a short `write`. */
  onWritable: () => void;
  /** The app half-closed (its FIN arrived and every byte before it was delivered through `onData`). */
  onEnd: () => void;
  /** The app reset the connection, or it failed (retransmissions gave up). */
  onReset: (reason: string) => void;
  /** The connection is gone from the router's table; called exactly once, last. */
  onClose: () => void;
}

/** One UDP flow (a 5-tuple) from an app, handed to `RouterOwner.openUdp` on its first datagram. */
export interface UdpFlow {
  readonly flow: Flow;
  /** Lets the flow's datagrams through (the first one included). */
  accept(): void;
  /**
   * Answers with an ICMP unreachable for the reason and ends the flow: before `accept`, the held first datagram is
   * the one quoted; after it (the cluster side found the port closed later), the flow's most recent inbound one.
   */
  refuse(reason: RefuseReason): void;
  /** An outbound datagram for the app; dropped and counted when larger than the path allows. */
  send(datagram: Uint8Array): void;
  /** Ends the flow now. */
  close(): void;
  /** An inbound datagram from the app; the array is only valid during the call. */
  onDatagram: (datagram: Uint8Array) => void;
  /** The flow ended (idle expiry, close); called exactly once, last. */
  onClose: () => void;
}

/** The daemon's side: told of each new connection and flow. */
export interface RouterOwner {
  openTcp(socket: TcpSocket): void;
  openUdp(flow: UdpFlow): void;
}
