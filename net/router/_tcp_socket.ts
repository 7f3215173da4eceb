/** The router's TcpSocket: one TcpConnection plus what the owner sees of it (owner.ts). */
import { TcpEvent } from "../tcp/options.ts";
import type { TcpConnection } from "../tcp/connection.ts";
import { type IpAddress, type IpHeader, ipToString, type PacketInfo } from "../wire/mod.ts";
import type { Flow, RefuseReason, TcpSocket } from "./owner.ts";

export interface TcpSocketHost {
  /** The connection has something to send: poll it soon. */
  kick(s: RouterTcpSocket): void;
  /** Answer the held SYN with an ICMP unreachable. */
  icmp(s: RouterTcpSocket, reason: RefuseReason): void;
}

/** Bytes of the SYN kept while held, to quote in an ICMP error (RFC 1812 4.3.2.3 asks for up to 576). */
const SYN_QUOTE_LEN = 576;

const noop = () => {};

export class RouterTcpSocket implements TcpSocket {
  readonly flow: Flow;
  /** The inbound 5-tuple key (`PacketInfo.flowKey`). */
  readonly key: string;
  readonly family: 4 | 6;
  /** Our side (the cluster address the app dialed) and the app's side. */
  readonly local: IpAddress;
  readonly remote: IpAddress;
  /** For building outbound packets: from `local` to `remote`, reused for every packet. */
  readonly outboundHeader: IpHeader;
  /** A copy of the SYN's packet while held, to quote in an ICMP error. */
  synPacket: Uint8Array | undefined;
  closed = false;
  queuedDeadline = Number.POSITIVE_INFINITY;

  onData: (data: Uint8Array) => boolean = () => true;
  onWritable: () => void = noop;
  onEnd: () => void = noop;
  onReset: (reason: string) => void = noop;
  onClose: () => void = noop;

  #paused = false;
  #endSent = false;
  #resetSent = false;
  #delivering = false;

  constructor(
    readonly conn: TcpConnection,
    key: string,
    info: PacketInfo,
    synPacket: Uint8Array,
    readonly host: TcpSocketHost,
  ) {
    this.family = info.version;
    this.key = key;
    this.local = info.dstAddress(synPacket);
    this.remote = info.srcAddress(synPacket);
    this.outboundHeader = { src: this.local, dst: this.remote } as IpHeader;
    this.synPacket = synPacket.slice(0, Math.min(info.ipLength, SYN_QUOTE_LEN));
    this.flow = {
      family: info.version,
      src: ipToString(this.remote),
      srcPort: info.srcPort,
      dst: ipToString(this.local),
      dstPort: info.dstPort,
    };
  }

  /** True if an IPv4 packet classified into `info` belongs to this connection (the router's fast path). */
  matches4(info: PacketInfo): boolean {
    return info.src4 === this.remote && info.dst4 === this.local && info.srcPort === this.flow.srcPort &&
      info.dstPort === this.flow.dstPort && info.version === 4;
  }

  accept(): void {
    if (this.closed || this.conn.state !== "SYN-HELD") return;
    this.synPacket = undefined;
    this.conn.accept();
  }

  refuse(reason: RefuseReason): void {
    if (this.closed || this.conn.state !== "SYN-HELD") return;
    if (reason === "refused") {
      this.conn.refuse({ reply: "rst" });
    } else {
      this.host.icmp(this, reason);
      this.conn.refuse({ reply: "none" });
    }
    this.host.kick(this);
  }

  write(data: Uint8Array): number {
    if (this.closed) return 0;
    try {
      return this.conn.write(data);
    } catch {
      return 0; // after end(): nothing more is taken
    }
  }

  end(): void {
    if (!this.closed) this.conn.shutdownWrite();
  }

  abort(): void {
    if (!this.closed) this.conn.abort();
  }

  resume(): void {
    if (this.closed || !this.#paused) return;
    this.#paused = false;
    this.#deliver();
    this.host.kick(this);
  }

  /** Applies a connection's events; returns true when the owner must be told of a new connection. */
  handleEvents(ev: number): boolean {
    if (ev & TcpEvent.Readable || ev & TcpEvent.PeerFin) this.#deliver();
    if (ev & TcpEvent.Writable) this.onWritable();
    if (ev & TcpEvent.Reset && !this.#resetSent) {
      this.#resetSent = true;
      this.onReset(this.conn.error ?? "reset");
    }
    return (ev & TcpEvent.Incoming) !== 0;
  }

  #deliver(): void {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      const c = this.conn;
      while (!this.#paused && c.readable > 0) {
        const view = c.peek();
        if (this.onData(view)) c.consume(view.length);
        else this.#paused = true;
      }
      if (!this.#paused && c.eof && !this.#endSent && !this.#resetSent) {
        this.#endSent = true;
        this.onEnd();
      }
    } finally {
      this.#delivering = false;
    }
  }

  fireClose(): void {
    // A connection that ended abnormally without a Reset event still tells the owner.
    if (this.conn.error && !this.#resetSent && this.conn.error !== "refused") {
      this.#resetSent = true;
      this.onReset(this.conn.error);
    }
    this.onClose();
  }
}
