/**
 * The router: reads batches of IP packets from the device (inbound), terminates each TCP connection and UDP flow
 * in the userspace stack, hands them to its owner (`owner.ts`), and writes the stack's answers back (outbound).
 *
 * One parse per packet (`_packet.ts`), then: the hooks in order (a hook may answer a packet itself), then dispatch
 * by 5-tuple. Connections are sans-IO (`net/tcp`); the router owns their clock: it polls a connection after input,
 * after an owner call, or when its deadline comes (a min-heap of deadlines and one timer). Every drop is counted by
 * name (`stats()`), never thrown.
 */
import type { TunDevice } from "../../ffi/tun.ts";
import type { TcpRepr } from "../wire/tcp_repr.ts";
import { TcpFlags } from "../wire/tcp_repr.ts";
import { TcpConnection } from "../tcp/connection.ts";
import { newTcpCounters, resolveConfig, type TcpConfig, type TcpCounters, type TcpOptions } from "../tcp/options.ts";
import { Deadlines } from "./_deadlines.ts";
import {
  addressText,
  type DropReason,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  newParsed,
  type Parsed,
  parseInbound,
  writeIcmpUnreachable,
  writeTcpPacket,
  writeUdpPacket,
} from "./_packet.ts";
import type { RouterOwner } from "./owner.ts";
import { RouterTcpSocket } from "./_tcp_socket.ts";
import { RouterUdpFlow } from "./_udp_flow.ts";

/** What a hook decides for a packet. `drop` counts it under the hook's name; `drop-silently` does not. */
export type HookVerdict = "accept" | "drop" | "drop-silently";

/** A hook sees each inbound packet, parsed once, before dispatch; it may answer with `router.inject()`. */
export interface Hook {
  name: string;
  inspect(packet: Uint8Array, parsed: Readonly<Parsed>): HookVerdict;
}

export interface RouterOptions {
  /** TCP tuning for every connection (the MSS is derived from the device MTU unless given). */
  tcp?: TcpOptions;
  /** Most TCP connections at once; a SYN beyond it is answered with RST and counted. */
  maxConnections?: number;
  /** Most UDP flows at once; beyond it a datagram is dropped and counted. */
  maxUdpFlows?: number;
  /** A UDP flow with no datagram either way for this long ends. */
  udpIdleMs?: number;
  /** The clock, in milliseconds (default `performance.now`). */
  now?: () => number;
  /** Told of an internal error that cost a packet (it is also counted as the drop `internalError`). */
  onError?: (e: unknown) => void;
  hooks?: Hook[];
}

export interface RouterCounters {
  packetsIn: number;
  packetsOut: number;
  tcpConnections: number;
  udpFlows: number;
  /** Drops by reason: malformed input, limits, unsupported protocols. */
  drops: Record<string, number>;
}

const DEFAULT_MAX_CONNECTIONS = 65_536;
const DEFAULT_MAX_UDP_FLOWS = 16_384;
const DEFAULT_UDP_IDLE_MS = 60_000;
/** IPv4 (20) + TCP (20) and IPv6 (40) + TCP (20) headers: MSS = MTU minus these (RFC 9293 section 3.7.1). */
const TCP4_OVERHEAD = 40;
const TCP6_OVERHEAD = 60;

export class Router {
  readonly #dev: TunDevice;
  readonly #owner: RouterOwner;
  readonly #now: () => number;
  readonly #onError: (e: unknown) => void;
  readonly #hooks: Hook[];
  readonly #tcp = new Map<string, RouterTcpSocket>();
  readonly #udp = new Map<string, RouterUdpFlow>();
  readonly #maxConnections: number;
  readonly #maxUdpFlows: number;
  readonly #udpIdleMs: number;
  readonly #cfg4: TcpConfig;
  readonly #cfg6: TcpConfig;
  readonly #tcpCounters: TcpCounters = newTcpCounters();
  readonly #counters: RouterCounters = { packetsIn: 0, packetsOut: 0, tcpConnections: 0, udpFlows: 0, drops: {} };
  readonly #parsed = newParsed();

  // Outbound batch: packets built into pooled buffers, written to the device in one call.
  readonly #pool: Uint8Array[] = [];
  #poolNext = 0;
  readonly #batch: Uint8Array[] = [];

  // Timers and deferred work.
  readonly #deadlines = new Deadlines<RouterTcpSocket>();
  readonly #dirty = new Set<RouterTcpSocket>();
  #serviceQueued = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #nextUdpSweep = 0;
  #stopped = false;
  #emitFor: RouterTcpSocket | undefined;
  readonly #emit = (seg: TcpRepr) => this.#emitTcp(seg);
  readonly #wake = (conn: TcpConnection) => this.#onWake(conn);

  constructor(dev: TunDevice, owner: RouterOwner, options: RouterOptions = {}) {
    this.#dev = dev;
    this.#owner = owner;
    this.#now = options.now ?? (() => performance.now());
    this.#onError = options.onError ?? (() => {});
    this.#hooks = [...(options.hooks ?? [])];
    this.#maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#maxUdpFlows = options.maxUdpFlows ?? DEFAULT_MAX_UDP_FLOWS;
    this.#udpIdleMs = options.udpIdleMs ?? DEFAULT_UDP_IDLE_MS;
    const mtu = dev.mtu;
    this.#cfg4 = resolveConfig({ mss: Math.min(65495, mtu - TCP4_OVERHEAD), ...options.tcp });
    this.#cfg6 = resolveConfig({ mss: Math.min(65475, mtu - TCP6_OVERHEAD), ...options.tcp });
    const bufLen = Math.max(mtu, 1280) + 64;
    for (let i = 0; i < Math.max(64, dev.batchSize); i++) this.#pool.push(new Uint8Array(bufLen));
  }

  /** Adds a hook after the others. */
  addHook(hook: Hook): void {
    this.#hooks.push(hook);
  }

  /** Reads and routes packets until the device closes or `stop()` is called. */
  async run(): Promise<void> {
    while (!this.#stopped) {
      const packets = await this.#dev.read();
      if (packets.length === 0) break;
      const now = this.#now();
      for (const p of packets) {
        try {
          this.#inbound(p, now);
        } catch (e) {
          // A bug must cost one packet, not the session: count it and go on.
          this.#drop("internalError");
          this.#onError(e);
        }
      }
      this.#service(now);
    }
    this.stop();
  }

  /** Stops routing: every connection is reset towards its app and every flow ends; the owner hears `onClose`. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const s of [...this.#tcp.values()]) s.conn.abort();
    try {
      this.#service(this.#now());
    } catch { /* the device may be closed already */ }
    for (const s of [...this.#tcp.values()]) this.#closeTcp(s);
    for (const f of [...this.#udp.values()]) f.close();
  }

  /** Counters: packets, connections, named drops, and the TCP stack's own counters. */
  stats(): RouterCounters & { tcp: TcpCounters } {
    return {
      ...this.#counters,
      tcpConnections: this.#tcp.size,
      udpFlows: this.#udp.size,
      drops: { ...this.#counters.drops },
      tcp: { ...this.#tcpCounters },
    };
  }

  /** Writes an outbound packet built by a hook (e.g. a DNS answer). */
  inject(packet: Uint8Array): void {
    this.#batch.push(packet);
    this.#flushBatch();
  }

  #drop(reason: DropReason | string): void {
    const d = this.#counters.drops;
    d[reason] = (d[reason] ?? 0) + 1;
  }

  // ---- inbound ----

  #inbound(packet: Uint8Array, now: number): void {
    this.#counters.packetsIn++;
    const p = this.#parsed;
    const bad = parseInbound(packet, p);
    if (bad !== null) return this.#drop(bad);
    for (const h of this.#hooks) {
      const v = h.inspect(packet, p);
      if (v === "accept") continue;
      if (v === "drop") this.#drop(`hook:${h.name}`);
      return;
    }
    switch (p.protocol) {
      case IPPROTO_TCP:
        return this.#tcpIn(packet, p, now);
      case IPPROTO_UDP:
        return this.#udpIn(packet, p, now);
      case IPPROTO_ICMP:
      case IPPROTO_ICMPV6:
        return this.#drop("icmpIgnored");
      default:
        return this.#drop("unsupportedProtocol");
    }
  }

  #tcpIn(packet: Uint8Array, p: Parsed, now: number): void {
    const seg = p.tcp;
    let s = this.#tcp.get(p.key);
    if (s === undefined) {
      const f = seg.flags;
      if ((f & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST)) !== TcpFlags.SYN) {
        if (!(f & TcpFlags.RST)) this.#rstUnmatched(p);
        return this.#drop("tcpNoConnection");
      }
      if (this.#tcp.size >= this.#maxConnections) {
        this.#rstUnmatched(p);
        return this.#drop("tcpConnectionLimit");
      }
      const conn = TcpConnection.fromSyn(seg, now, {
        config: p.family === 4 ? this.#cfg4 : this.#cfg6,
        counters: this.#tcpCounters,
        wake: this.#wake,
      });
      s = new RouterTcpSocket(conn, p, packet, {
        kick: (x) => this.#kick(x),
        icmp: (x, reason) => this.#icmpUnreachable(x.synPacket!, reason, IPPROTO_TCP),
      });
      this.#tcp.set(p.key, s);
      this.#byConn.set(conn, s);
      this.#afterEvents(s);
      this.#dirty.add(s);
      return;
    }
    s.conn.input(seg, now);
    this.#dirty.add(s);
  }

  readonly #byConn = new Map<TcpConnection, RouterTcpSocket>();

  #udpIn(packet: Uint8Array, p: Parsed, now: number): void {
    let f = this.#udp.get(p.key);
    if (f === undefined) {
      if (this.#udp.size >= this.#maxUdpFlows) return this.#drop("udpFlowLimit");
      f = new RouterUdpFlow(p, now, {
        send: (flow, datagram) => this.#udpOut(flow, datagram),
        icmp: (quote, reason) => this.#icmpUnreachable(quote, reason, IPPROTO_UDP),
        closed: (flow) => {
          this.#udp.delete(flow.key);
        },
      });
      this.#udp.set(p.key, f);
      f.inbound(packet, p.udpPayload, now);
      this.#owner.openUdp(f);
      return;
    }
    f.inbound(packet, p.udpPayload, now);
  }

  // ---- connection servicing ----

  #onWake(conn: TcpConnection): void {
    const s = this.#byConn.get(conn);
    if (s) this.#kick(s);
  }

  #kick(s: RouterTcpSocket): void {
    this.#dirty.add(s);
    if (!this.#serviceQueued && !this.#stopped) {
      this.#serviceQueued = true;
      queueMicrotask(() => {
        this.#serviceQueued = false;
        if (!this.#stopped) this.#service(this.#now());
      });
    }
  }

  /** Polls every dirty and due connection, handles their events, writes the batch, and re-arms the timer. */
  #service(now: number): void {
    for (let round = 0; round < 4 && this.#dirty.size; round++) {
      const dirty = [...this.#dirty];
      this.#dirty.clear();
      for (const s of dirty) this.#poll(s, now);
    }
    for (let s = this.#deadlines.popDue(now); s !== undefined; s = this.#deadlines.popDue(now)) {
      s.queuedDeadline = Number.POSITIVE_INFINITY;
      if (!s.closed) this.#poll(s, now);
    }
    if (now >= this.#nextUdpSweep) this.#sweepUdp(now);
    this.#flushBatch();
    this.#arm(now);
  }

  #poll(s: RouterTcpSocket, now: number): void {
    if (s.closed) return;
    this.#emitFor = s;
    s.conn.poll(now, this.#emit);
    this.#emitFor = undefined;
    this.#afterEvents(s);
    if (s.closed) return;
    const d = s.conn.nextDeadline();
    if (d < s.queuedDeadline) {
      s.queuedDeadline = d;
      this.#deadlines.push(d, s);
    }
  }

  #afterEvents(s: RouterTcpSocket): void {
    const ev = s.conn.takeEvents();
    if (ev === 0) return;
    const opened = s.handleEvents(ev);
    if (opened) {
      try {
        this.#owner.openTcp(s);
      } catch {
        s.conn.abort();
      }
    }
    if (s.conn.state === "CLOSED" && !s.closed) {
      // Emit what closing queued (an RST), then forget the connection.
      this.#emitFor = s;
      s.conn.poll(this.#now(), this.#emit);
      this.#emitFor = undefined;
      this.#closeTcp(s);
    }
  }

  #closeTcp(s: RouterTcpSocket): void {
    if (s.closed) return;
    s.closed = true;
    this.#tcp.delete(s.key);
    this.#byConn.delete(s.conn);
    this.#dirty.delete(s);
    s.fireClose();
  }

  #arm(now: number): void {
    let at = this.#deadlines.peek();
    if (this.#udp.size) at = Math.min(at, this.#nextUdpSweep);
    if (at === Number.POSITIVE_INFINITY || this.#stopped) return;
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      if (!this.#stopped) this.#service(this.#now());
    }, Math.max(0, Math.ceil(at - now)));
  }

  #sweepUdp(now: number): void {
    this.#nextUdpSweep = now + Math.max(100, this.#udpIdleMs / 4);
    for (const f of [...this.#udp.values()]) {
      if (now - f.lastActive >= this.#udpIdleMs) {
        this.#drop("udpIdleExpired");
        f.close();
      }
    }
  }

  // ---- outbound ----

  #buffer(): Uint8Array {
    if (this.#poolNext >= this.#pool.length) this.#flushBatch();
    return this.#pool[this.#poolNext++]!;
  }

  #push(buf: Uint8Array, len: number): void {
    if (len <= 0) return this.#drop("outboundBuildFailed");
    this.#batch.push(buf.subarray(0, len));
    if (this.#batch.length >= this.#dev.batchSize) this.#flushBatch();
  }

  #flushBatch(): void {
    if (this.#batch.length) {
      const n = this.#batch.length;
      let written = 0;
      try {
        written = this.#dev.write(this.#batch);
      } catch {
        written = 0;
      }
      this.#counters.packetsOut += written;
      if (written < n) {
        const d = this.#counters.drops;
        d["deviceWrite"] = (d["deviceWrite"] ?? 0) + (n - written);
      }
      this.#batch.length = 0;
    }
    this.#poolNext = 0;
  }

  #emitTcp(seg: TcpRepr): void {
    const s = this.#emitFor;
    if (!s) return;
    const buf = this.#buffer();
    this.#push(buf, writeTcpPacket(buf, s.family, s.localAddr, s.remoteAddr, seg));
  }

  #udpOut(f: RouterUdpFlow, datagram: Uint8Array): void {
    f.lastActive = this.#now();
    const buf = this.#buffer();
    const need = datagram.length + (f.family === 4 ? 28 : 48);
    if (need > buf.length || need > this.#dev.mtu) {
      this.#drop("udpOutboundTooBig");
      return;
    }
    this.#push(buf, writeUdpPacket(buf, f.family, f.localAddr, f.localPort, f.remoteAddr, f.remotePort, datagram));
    this.#flushBatch();
  }

  #icmpUnreachable(quote: Uint8Array, reason: string, _proto: number): void {
    const buf = this.#buffer();
    this.#push(buf, writeIcmpUnreachable(buf, quote, reason));
    this.#flushBatch();
  }

  /** RFC 9293 section 3.10.7.1: a segment for no connection gets an RST (unless it is one). */
  #rstUnmatched(p: Parsed): void {
    const seg = p.tcp;
    const len = seg.payload.length + (seg.flags & TcpFlags.SYN ? 1 : 0) + (seg.flags & TcpFlags.FIN ? 1 : 0);
    const rst: TcpRepr = seg.flags & TcpFlags.ACK
      ? {
        srcPort: seg.dstPort,
        dstPort: seg.srcPort,
        seq: seg.ack,
        ack: 0,
        flags: TcpFlags.RST,
        window: 0,
        urgent: 0,
        payload: EMPTY,
      }
      : {
        srcPort: seg.dstPort,
        dstPort: seg.srcPort,
        seq: 0,
        ack: (seg.seq + len) >>> 0,
        flags: TcpFlags.RST | TcpFlags.ACK,
        window: 0,
        urgent: 0,
        payload: EMPTY,
      };
    const buf = this.#buffer();
    this.#push(buf, writeTcpPacket(buf, p.family, p.dst, p.src, rst));
  }
}

const EMPTY = new Uint8Array(0);

export { addressText };
