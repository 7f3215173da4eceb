/**
 * Test harness for the router (only tests import this file): a `MemoryTun`, a router on a fake clock, an owner
 * that records what it is handed, and the app's side of the wire: packets built with `net/wire` and the router's
 * answers parsed back.
 */
import { MemoryTun } from "../../ffi/tun_memory.ts";
import {
  buildIcmpPacket,
  buildTcpPacket,
  buildUdpPacket,
  classify,
  type IpAddress,
  type IpHeader,
  ipv4FromString,
  ipv6FromString,
  PacketInfo,
  parseTcp,
  TcpFlags,
  type TcpRepr,
  TcpSegment,
} from "../wire/mod.ts";
import type { RouterOwner, TcpSocket, UdpFlow } from "./owner.ts";
import { Router, type RouterOptions } from "./router.ts";

export const { FIN, SYN, RST, PSH, ACK } = TcpFlags;
export const APP4 = ipv4FromString("198.18.0.1");
export const SVC4 = ipv4FromString("198.19.0.10");
export const APP6 = ipv6FromString("2001:db8:1::1");
export const SVC6 = ipv6FromString("2001:db8:5::10");
export const APP_ISN = 0xffff_ff00; // near the wrap, so tests cross it

/** A packet the router wrote, parsed. */
export interface Out {
  bytes: Uint8Array;
  version: 4 | 6;
  protocol: number;
  src: IpAddress;
  dst: IpAddress;
  tcp?: TcpRepr;
  udp?: { srcPort: number; dstPort: number; payload: Uint8Array };
  icmp?: { type: number; code: number; quote: Uint8Array };
}

export function parseOut(bytes: Uint8Array): Out {
  const info = new PacketInfo();
  const bad = classify(bytes, info);
  if (bad !== null) throw new Error(`The router wrote a malformed packet (${bad})`);
  const o: Out = {
    bytes,
    version: info.version,
    protocol: info.protocol,
    src: info.srcAddress(bytes),
    dst: info.dstAddress(bytes),
  };
  if (info.protocol === 6) {
    o.tcp = parseTcp(new TcpSegment(bytes.subarray(info.transportOffset, info.ipLength)), null) as TcpRepr;
  } else if (info.protocol === 17) {
    o.udp = {
      srcPort: info.srcPort,
      dstPort: info.dstPort,
      payload: bytes.subarray(info.payloadOffset, info.payloadEnd),
    };
  } else {
    o.icmp = { type: info.icmpType, code: info.icmpCode, quote: bytes.subarray(info.payloadOffset, info.payloadEnd) };
  }
  return o;
}

/** The owner: records sockets and flows, and decides with `onTcp` / `onUdp` (default: leave them held). */
export class RecordingOwner implements RouterOwner {
  readonly sockets: TcpSocket[] = [];
  readonly flows: UdpFlow[] = [];
  onTcp: (s: TcpSocket) => void = () => {};
  onUdp: (f: UdpFlow) => void = () => {};
  openTcp(s: TcpSocket): void {
    this.sockets.push(s);
    this.onTcp(s);
  }
  openUdp(f: UdpFlow): void {
    this.flows.push(f);
    this.onUdp(f);
  }
}

/** What the owner saw on one socket. */
export class SocketLog {
  data: number[] = [];
  ended = false;
  reset: string | null = null;
  closed = false;
  writable = 0;
  /** What `onData` returns. */
  take = true;
  constructor(readonly socket: TcpSocket) {
    socket.onData = (d) => {
      if (!this.take) return false;
      this.data.push(...d);
      return true;
    };
    socket.onEnd = () => (this.ended = true);
    socket.onReset = (r) => (this.reset = r);
    socket.onClose = () => (this.closed = true);
    socket.onWritable = () => this.writable++;
  }
}

export interface Endpoints {
  family?: 4 | 6;
  appPort?: number;
  svcPort?: number;
  /** The cluster-side address (default SVC4 or SVC6, of `family`). */
  svc?: IpAddress;
}

export class Harness {
  readonly clock = { t: 1000 };
  readonly tun: MemoryTun;
  readonly owner = new RecordingOwner();
  readonly router: Router;
  readonly running: Promise<void>;
  readonly errors: unknown[] = [];

  constructor(options: RouterOptions = {}, tun = new MemoryTun({ mtu: 1500 })) {
    this.tun = tun;
    this.router = new Router(tun, this.owner, {
      now: () => this.clock.t,
      onError: (e) => this.errors.push(e),
      ...options,
    });
    this.running = this.router.run();
  }

  ip(e: Endpoints = {}): IpHeader {
    return (e.family === 6 ? { src: APP6, dst: e.svc ?? SVC6 } : { src: APP4, dst: e.svc ?? SVC4 }) as IpHeader;
  }

  /** A TCP packet from the app (defaults: port 40000 -> 8080, ACK, window 65535). */
  tcpPacket(p: Partial<TcpRepr>, e: Endpoints = {}): Uint8Array {
    const out = new Uint8Array(70000);
    const n = buildTcpPacket(out, this.ip(e), {
      srcPort: e.appPort ?? 40000,
      dstPort: e.svcPort ?? 8080,
      seq: 0,
      ack: 0,
      flags: ACK,
      window: 0xffff,
      urgent: 0,
      payload: new Uint8Array(0),
      ...p,
    });
    return out.slice(0, n);
  }

  sendTcp(p: Partial<TcpRepr>, e: Endpoints = {}): void {
    this.tun.inject(this.tcpPacket(p, e));
  }

  udpPacket(payload: Uint8Array, e: Endpoints = {}): Uint8Array {
    const out = new Uint8Array(2000);
    const n = buildUdpPacket(out, this.ip(e), { srcPort: e.appPort ?? 40000, dstPort: e.svcPort ?? 53, payload });
    return out.slice(0, n);
  }

  /** Moves the fake clock and makes the router service its timers (an ICMP echo it ignores wakes it). */
  async advance(ms: number): Promise<void> {
    await settle(); // packets already injected are read at the old time
    this.clock.t += ms;
    const out = new Uint8Array(100);
    const n = buildIcmpPacket(out, { src: APP4, dst: SVC4 }, {
      kind: "echoRequest",
      ident: 1,
      seqNo: 1,
      data: new Uint8Array(0),
    });
    this.tun.inject(out.slice(0, n));
    await settle();
  }

  async recv(count = 1, timeoutMs = 1000): Promise<Out[]> {
    return (await this.tun.waitWritten(count, timeoutMs)).map(parseOut);
  }

  /** Packets written so far (waits a few event-loop turns first). */
  async drain(): Promise<Out[]> {
    await settle();
    return this.tun.takeWritten().map(parseOut);
  }

  /** A connection from the app, accepted by the owner: returns the socket's log and the router's ISN. */
  async established(e: Endpoints = {}): Promise<{ log: SocketLog; isn: number }> {
    this.owner.onTcp = (s) => s.accept();
    this.sendTcp({ seq: APP_ISN, flags: SYN, mss: 1000 }, e);
    const [synAck] = await this.recv();
    const isn = synAck!.tcp!.seq;
    this.sendTcp({ seq: APP_ISN + 1, ack: isn + 1 }, e);
    await settle();
    const log = new SocketLog(this.owner.sockets.at(-1)!);
    return { log, isn };
  }

  async close(): Promise<void> {
    this.router.stop();
    this.tun.close();
    await this.running;
  }
}

/** Lets the router run: a few macrotasks (MemoryTun's read waits one per batch). */
export async function settle(turns = 4): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setTimeout(r, 1));
}

export function pattern(n: number, from = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (from + i * 13) & 0xff;
  return b;
}

/** `a + n` modulo 2^32, for sequence numbers in tests. */
export function seq(a: number, n: number): number {
  return (a + n) >>> 0;
}
