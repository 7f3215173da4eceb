/**
 * The router: reads batches of IP packets from the device (inbound), terminates each TCP connection and UDP flow
 * in the userspace stack, hands them to its owner (`owner.ts`), and writes the stack's answers back (outbound).
 *
 * One parse per packet (`net/wire`'s `classify`, then `parseTcp` for TCP), then: the hooks in order (a hook may
 * answer a packet itself: the daemon's ICMP echo), then dispatch by 5-tuple: TCP to a `TcpConnection` (`net/tcp`) in
 * the router's connection table, UDP to `net/udp`'s `UdpFlowTable`. Connections are sans-IO; the router owns their
 * clock: it polls a connection after input, after an owner call, or when its deadline comes (one min-heap of deadlines,
 * `_deadlines.ts`, and one timer). Outbound packets are built by `net/wire` into pooled buffers and written in batches.
 * Every drop is counted by name (`stats()`), never thrown.
 */
import type { TunDevice } from "../../ffi/tun.ts";
import { TcpConnection } from "../tcp/connection.ts";
import { newTcpCounters, resolveConfig, type TcpConfig, type TcpCounters, type TcpOptions } from "../tcp/options.ts";
import { rstForUnmatched } from "../tcp/reset.ts";
import { type UdpFlowCounters, UdpFlowTable } from "../udp/mod.ts";
import {
  buildTcpPacket,
  buildUdpPacket,
  buildUnreachable,
  classify,
  type ClassifyOptions,
  type IpHeader,
  IpProtocol,
  ipToString,
  PacketInfo,
  parseTcp,
  TcpFlags,
  type TcpRepr,
  TcpSegment,
  type UnreachableReason,
} from "../wire/mod.ts";
import { Deadlines } from "./_deadlines.ts";
import { InProgress } from "./_in_progress.ts";
import type { RefuseReason, RouterOwner } from "./owner.ts";
import { RouterTcpSocket } from "./_tcp_socket.ts";
import { RouterUdpFlow, type UdpFlowHost } from "./_udp_flow.ts";

/** What a hook decides for a packet. `drop` counts it under the hook's name; `drop-silently` does not. */
export type HookVerdict = "accept" | "drop" | "drop-silently";

/**
 * A hook sees each inbound packet, classified once (`net/wire`'s `PacketInfo`: version, protocol, addresses,
 * ports, payload range), before dispatch; it may answer with `router.inject()`. `info` is reused for the next
 * packet: read it during the call.
 */
export interface Hook {
  name: string;
  inspect(packet: Uint8Array, info: Readonly<PacketInfo>): HookVerdict;
}

export interface RouterOptions {
  /** TCP tuning for every connection (the MSS is derived from the device MTU unless given). */
  tcp?: TcpOptions;
  /** Most TCP connections at once; a SYN beyond it is answered with RST and counted. */
  maxConnections?: number;
  /**
   * Most TCP connections in progress at once (SYN-HELD: the owner dials; SYN-RECEIVED: the app's ACK is due), shared
   * fairly between destination addresses (`_in_progress.ts`); a SYN beyond it is answered with RST and counted.
   */
  maxConnectionsInProgress?: number;
  /** Most UDP flows at once; beyond it a datagram is dropped and counted. */
  maxUdpFlows?: number;
  /**
   * A UDP flow with no datagram either way for this long ends. Default: Linux conntrack's timeouts (30 s until a
   * datagram went back to the app, 120 s after; `net/udp`).
   */
  udpIdleMs?: number;
  /**
   * Verify inbound IPv4 header and transport checksums (default true). A kernel TUN's packets come from this
   * machine's own IP stack, so the daemon may turn this off to save a pass over every byte; malformed lengths are still dropped and counted.
   */
  verifyChecksums?: boolean;
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
  /** TCP connections in SYN-HELD or SYN-RECEIVED. */
  tcpInProgress: number;
  udpFlows: number;
  /** Drops by reason: malformed input (`net/wire`'s `DropReason` names), limits, unsupported protocols. */
  drops: Record<string, number>;
}

const DEFAULT_MAX_CONNECTIONS = 65_536;
/**
 * Connections in progress: gVisor's forwarder users pick 1,024 to 4,096 for `maxInFlight` (Tailscale's netstack: 1,024
 * on small machines). Each one holds a tunnel stream while it dials, and the manager serves 4,160 streams at once
 * (`manager/listen.ts`): 1,024 leaves three quarters of them to open connections.
 */
const DEFAULT_MAX_IN_PROGRESS = 1_024;
/** Evictions for fairness (`_in_progress.ts`): each may leave a dial running at the manager for its 5 s timeout. */
const EVICTION_BURST = 64;
const EVICTIONS_PER_SECOND = 64;
const DEFAULT_MAX_UDP_FLOWS = 16_384;
/** IPv4 (20) + TCP (20) and IPv6 (40) + TCP (20) headers: MSS = MTU minus these (RFC 9293 section 3.7.1). */
const TCP4_OVERHEAD = 40;
const TCP6_OVERHEAD = 60;

const UNREACHABLE: Record<RefuseReason, UnreachableReason> = {
  refused: "port",
  unreachable: "host",
  timeout: "host",
  denied: "adminProhibited",
};

const { SYN, ACK, RST } = TcpFlags;

export class Router {
  readonly #dev: TunDevice;
  readonly #owner: RouterOwner;
  readonly #now: () => number;
  readonly #onError: (e: unknown) => void;
  readonly #hooks: Hook[];
  readonly #tcp = new Map<string, RouterTcpSocket>();
  readonly #udp: UdpFlowTable<RouterUdpFlow>;
  readonly #maxConnections: number;
  readonly #inProgress: InProgress<RouterTcpSocket>;
  readonly #cfg4: TcpConfig;
  readonly #cfg6: TcpConfig;
  readonly #tcpCounters: TcpCounters = newTcpCounters();
  readonly #counters: RouterCounters = {
    packetsIn: 0,
    packetsOut: 0,
    tcpConnections: 0,
    tcpInProgress: 0,
    udpFlows: 0,
    drops: {},
  };
  readonly #info = new PacketInfo();
  readonly #classify: ClassifyOptions;
  /** The connection of the last TCP packet: a bulk flow's packets skip the key and the map lookup. */
  #last: RouterTcpSocket | undefined;

  // Outbound batch: packets built into pooled buffers, written to the device in one call.
  readonly #pool: Uint8Array[] = [];
  #poolNext = 0;
  readonly #batch: Uint8Array[] = [];

  // Timers and deferred work.
  readonly #deadlines = new Deadlines<RouterTcpSocket>();
  readonly #dirty = new Set<RouterTcpSocket>();
  readonly #byConn = new Map<TcpConnection, RouterTcpSocket>();
  #serviceQueued = false;
  /** While `run` lets the tunnels write what a batch read carried, the answers to the apps wait (`run`). */
  #holdBatch = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #stopped = false;
  #emitFor: RouterTcpSocket | undefined;
  readonly #emit = (seg: TcpRepr) => this.#emitTcp(seg);
  readonly #wake = (conn: TcpConnection) => this.#onWake(conn);
  readonly #udpHost: UdpFlowHost;

  constructor(dev: TunDevice, owner: RouterOwner, options: RouterOptions = {}) {
    this.#dev = dev;
    this.#owner = owner;
    this.#now = options.now ?? (() => performance.now());
    this.#onError = options.onError ?? (() => {});
    this.#hooks = [...(options.hooks ?? [])];
    this.#maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#inProgress = new InProgress({
      max: options.maxConnectionsInProgress ?? DEFAULT_MAX_IN_PROGRESS,
      evictionBurst: EVICTION_BURST,
      evictionsPerSecond: EVICTIONS_PER_SECOND,
    });
    const idle = options.udpIdleMs;
    this.#udp = new UdpFlowTable<RouterUdpFlow>({
      maxFlows: options.maxUdpFlows ?? DEFAULT_MAX_UDP_FLOWS,
      ...(idle === undefined ? {} : { unrepliedTimeoutMs: idle, repliedTimeoutMs: idle }),
    });
    this.#udpHost = {
      table: this.#udp,
      send: (f, datagram) => this.#udpOut(f, datagram),
      icmp: (quote, reason) => this.#icmpUnreachable(quote, reason),
    };
    this.#classify = { verifyChecksums: options.verifyChecksums ?? true };
    const mtu = dev.mtu;
    this.#cfg4 = resolveConfig({ mss: Math.min(65495, mtu - TCP4_OVERHEAD), ...options.tcp });
    this.#cfg6 = resolveConfig({ mss: Math.min(65475, mtu - TCP6_OVERHEAD), ...options.tcp });
    const bufLen = Math.min(Math.max(mtu, 1280) + 64, 65536 + 40);
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
      for (let i = 0; i < packets.length; i++) {
        try {
          this.#inbound(packets[i]!, now);
        } catch (e) {
          // A bug must cost one packet, not the session: count it and go on.
          this.#drop("internalError");
          this.#onError(e);
        }
      }
      this.#holdBatch = true;
      this.#serviceSafely(now);
      // What this batch's apps sent goes to the tunnels first: a tunnel frames it in a microtask and the HTTP/2
      // connection writes the frames in the next one. Then the answers to the apps (for a request, the pure ACK
      // saying it arrived), and only then the next read, which hands the device's wait to another thread.
      await Promise.resolve();
      await Promise.resolve();
      this.#holdBatch = false;
      this.#flushBatch();
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
    this.#holdBatch = false;
    try {
      this.#serviceSafely(this.#now());
    } catch { /* the device may be closed already */ }
    for (const s of [...this.#tcp.values()]) this.#closeTcp(s);
    for (const f of [...this.#udp.flows()]) f.owner?.close();
  }

  /**
   * Counters: packets, connections, named drops, and the TCP stack's and UDP table's own counters. The table's held
   * datagrams discarded when a pending flow ends are among the drops (`udpHeldDiscarded`).
   */
  stats(): RouterCounters & { tcp: TcpCounters; udp: UdpFlowCounters } {
    const discarded = this.#udp.counters.heldDiscarded;
    return {
      ...this.#counters,
      tcpConnections: this.#tcp.size,
      tcpInProgress: this.#inProgress.size,
      udpFlows: this.#udp.size,
      drops: { ...this.#counters.drops, ...(discarded > 0 ? { udpHeldDiscarded: discarded } : {}) },
      tcp: { ...this.#tcpCounters },
      udp: { ...this.#udp.counters },
    };
  }

  /** Writes an outbound packet built by a hook (e.g. a DNS answer). */
  inject(packet: Uint8Array): void {
    this.#batch.push(packet);
    this.#flushBatch();
  }

  #drop(reason: string, n = 1): void {
    const d = this.#counters.drops;
    d[reason] = (d[reason] ?? 0) + n;
  }

  // ---- inbound ----

  #inbound(packet: Uint8Array, now: number): void {
    this.#counters.packetsIn++;
    const info = this.#info;
    const bad = classify(packet, info, this.#classify);
    if (bad !== null) return this.#drop(bad);
    // tp terminates unicast only (an ICMP error may not answer the others either: RFC 1122 3.2.2, RFC 4443 2.4).
    if (info.version === 4 ? info.dst4 >>> 28 === 0xe || info.dst4 === 0xffffffff : packet[24] === 0xff) {
      return this.#drop("multicastOrBroadcast");
    }
    const hooks = this.#hooks;
    for (let i = 0; i < hooks.length; i++) {
      const h = hooks[i]!;
      const v = h.inspect(packet, info);
      if (v === "accept") continue;
      if (v === "drop") this.#drop(`hook:${h.name}`);
      return;
    }
    switch (info.protocol) {
      case IpProtocol.TCP:
        return this.#tcpIn(packet, info, now);
      case IpProtocol.UDP:
        return this.#udpIn(packet, info, now);
      default: // classify() passes TCP, UDP, ICMP and ICMPv6 only
        return this.#drop("icmpIgnored");
    }
  }

  #tcpIn(packet: Uint8Array, info: PacketInfo, now: number): void {
    // classify() checked the header length; parseTcp() reads the options (its repr is fresh per packet: the
    // measured cost of that allocation is small next to the rest of a segment's way, see bench_stack_router.ts).
    const seg = parseTcp(new TcpSegment(packet.subarray(info.transportOffset, info.ipLength)), null) as TcpRepr;
    let s = this.#last;
    let key: string | undefined;
    if (s === undefined || s.closed || !s.matches4(info)) {
      key = info.flowKey(packet);
      s = this.#tcp.get(key);
    }
    if (s !== undefined && s.conn.reopenedBy(seg)) {
      this.#closeTcp(s); // a new SYN for a pair in TIME-WAIT (RFC 6191): the SYN opens a new connection below
      s = undefined;
    }
    if (s !== undefined) {
      this.#last = s;
      s.conn.input(seg, now);
      this.#dirty.add(s);
      return;
    }
    key ??= info.flowKey(packet);
    if ((seg.flags & (SYN | ACK | RST)) !== SYN) {
      this.#rstUnmatched(packet, info, seg);
      return this.#drop("tcpNoConnection");
    }
    if (this.#tcp.size >= this.#maxConnections) {
      this.#rstUnmatched(packet, info, seg);
      return this.#drop("tcpConnectionLimit");
    }
    const dst = info.version === 4 ? info.dst4 : ipToString(info.dstAddress(packet));
    const admission = this.#inProgress.admit(dst, now);
    if (!admission.admit) {
      this.#rstUnmatched(packet, info, seg);
      return this.#drop("tcpInProgressLimit");
    }
    if (admission.evict !== undefined) {
      // The busiest destination gives up its oldest attempt (the app gets an RST) to one that has fewer.
      this.#drop("tcpInProgressEvicted");
      admission.evict.conn.abort();
      this.#afterEvents(admission.evict);
    }
    const conn = TcpConnection.fromSyn(seg, now, {
      config: info.version === 4 ? this.#cfg4 : this.#cfg6,
      counters: this.#tcpCounters,
      wake: this.#wake,
    });
    s = new RouterTcpSocket(conn, key, info, packet, {
      kick: (x) => this.#kick(x),
      icmp: (x, reason) => {
        if (x.synPacket !== undefined) this.#icmpUnreachable(x.synPacket, reason);
      },
    });
    this.#tcp.set(key, s);
    this.#byConn.set(conn, s);
    this.#inProgress.add(dst, s);
    this.#afterEvents(s);
    this.#dirty.add(s);
  }

  #udpIn(packet: Uint8Array, info: PacketInfo, now: number): void {
    const table = this.#udp;
    switch (table.inbound(packet, info, now)) {
      case "created": {
        const entry = table.flow!;
        const f = new RouterUdpFlow(entry, this.#udpHost);
        entry.owner = f;
        this.#owner.openUdp(f);
        return;
      }
      case "deliver":
        table.flow!.owner?.onDatagram(packet.subarray(info.payloadOffset, info.payloadEnd));
        return;
      case "held":
        return;
      case "heldFull":
        return this.#drop("udpHeldFull");
      case "tableFull":
        return this.#drop("udpFlowLimit");
    }
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
        if (!this.#stopped) this.#serviceSafely(this.#now());
      });
    }
  }

  /** `#service`, with a bug in an owner's callback costing a count and a log line, not the router. */
  #serviceSafely(now: number): void {
    try {
      this.#service(now);
    } catch (e) {
      this.#drop("internalError");
      this.#onError(e);
    }
  }

  /** Polls every dirty and due connection, handles their events, writes the batch (unless `run` holds it), and re-arms
   * the timer. */
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
    const udpDue = this.#udp.nextDeadline();
    if (udpDue !== null && udpDue <= now) this.#expireUdp(now);
    if (!this.#holdBatch) this.#flushBatch();
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
    const state = s.conn.state;
    if (state !== "SYN-HELD" && state !== "SYN-RECEIVED") this.#inProgress.remove(s);
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
    this.#inProgress.remove(s);
    if (this.#tcp.get(s.key) === s) this.#tcp.delete(s.key);
    this.#byConn.delete(s.conn);
    this.#dirty.delete(s);
    if (this.#last === s) this.#last = undefined;
    s.fireClose();
  }

  #arm(now: number): void {
    this.#pruneDeadlines();
    let at = this.#deadlines.peek();
    const udpDue = this.#udp.nextDeadline();
    if (udpDue !== null) at = Math.min(at, udpDue);
    if (at === Number.POSITIVE_INFINITY || this.#stopped) return;
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      if (!this.#stopped) this.#serviceSafely(this.#now());
    }, Math.max(0, Math.ceil(at - now)));
  }

  /**
   * Drops stale entries from the top of the deadline heap before the timer is armed for it: a closed connection's,
   * and a deadline its connection no longer has (the ACK came and stopped the retransmission timer), whose connection
   * is queued again at its real next deadline. Without this each new connection woke the daemon about three times
   * after it ended, for timers that had been stopped.
   */
  #pruneDeadlines(): void {
    const deadlines = this.#deadlines;
    for (let i = 0; i < 64; i++) { // bounded: the rest surface later, as before
      const s = deadlines.peekItem();
      if (s === undefined) return;
      const at = deadlines.peek();
      const real = s.closed ? Number.POSITIVE_INFINITY : s.conn.nextDeadline();
      if (real <= at) return;
      deadlines.popDue(at);
      if (s.queuedDeadline === at) s.queuedDeadline = Number.POSITIVE_INFINITY;
      if (real < s.queuedDeadline) {
        s.queuedDeadline = real;
        deadlines.push(real, s);
      }
    }
  }

  #expireUdp(now: number): void {
    for (const entry of this.#udp.expire(now)) {
      this.#drop("udpIdleExpired");
      entry.owner?.fireClose();
    }
  }

  // ---- outbound ----

  #buffer(): Uint8Array {
    if (this.#poolNext >= this.#pool.length) this.#flushBatch();
    return this.#pool[this.#poolNext++]!;
  }

  #push(packet: Uint8Array): void {
    this.#batch.push(packet);
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
      if (written < n) this.#drop("deviceWrite", n - written);
      this.#batch.length = 0;
    }
    this.#poolNext = 0;
  }

  #emitTcp(seg: TcpRepr): void {
    const s = this.#emitFor;
    if (!s) return;
    const buf = this.#buffer();
    const len = this.#build(buf, s.outboundHeader, seg);
    if (len > 0) this.#push(buf.subarray(0, len));
  }

  #build(buf: Uint8Array, ip: IpHeader, seg: TcpRepr): number {
    try {
      return buildTcpPacket(buf, ip, seg);
    } catch (e) {
      // A segment that does not fit the buffer is a bug upstream: count it, lose the packet, not the session.
      this.#drop("outboundBuildFailed");
      this.#onError(e);
      return 0;
    }
  }

  #udpOut(f: RouterUdpFlow, datagram: Uint8Array): void {
    const e = f.entry;
    const v4 = typeof e.app === "number";
    if (datagram.length + (v4 ? 28 : 48) > this.#dev.mtu) return this.#drop("udpOutboundTooBig");
    // The flow is pending (the owner sent before accepting) or gone (it ended while the cluster side still answered).
    if (!this.#udp.outbound(e, datagram.length, this.#now())) return this.#drop("udpOutboundNoFlow");
    const buf = this.#buffer();
    const len = buildUdpPacket(buf, e.outboundHeader, { srcPort: e.remotePort, dstPort: e.appPort, payload: datagram });
    this.#push(buf.subarray(0, len));
    this.#flushBatch();
  }

  #icmpUnreachable(quote: Uint8Array, reason: RefuseReason): void {
    const buf = this.#buffer();
    const len = buildUnreachable(buf, quote, { reason: UNREACHABLE[reason] });
    if (len === 0) return this.#drop("icmpNotAllowed");
    this.#push(buf.subarray(0, len));
    this.#flushBatch();
  }

  /** RFC 9293 section 3.10.7.1: a segment for no connection gets an RST (unless it is one). */
  #rstUnmatched(packet: Uint8Array, info: PacketInfo, seg: TcpRepr): void {
    const rst = rstForUnmatched(seg);
    if (rst === null) return;
    this.#tcpCounters.resetsSent++;
    const buf = this.#buffer();
    const ip = { src: info.dstAddress(packet), dst: info.srcAddress(packet) } as IpHeader;
    const len = this.#build(buf, ip, rst);
    if (len > 0) this.#push(buf.subarray(0, len));
  }
}
