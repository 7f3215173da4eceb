/**
 * Test fixtures: a connection under test driven by a scripted peer with a fake clock, one builder per state.
 * Only tests import this file.
 */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";
import { TcpConnection } from "./connection.ts";
import type { TcpOptions } from "./options.ts";
import { seqAdd } from "./seq.ts";

export const { FIN, SYN, RST, ACK, PSH } = TcpFlags;
/** Our initial sequence number: close to the wrap so that tests cross it. */
export const OUR_ISN = 0xffff_fff0;
export const PEER_ISN = 0x7fff_fff0;
export const OUR_PORT = 80;
export const PEER_PORT = 40000;

/** Copies a segment (the emitted object and payload are only valid during the emit callback). */
export function cloneSeg(s: TcpRepr): TcpRepr {
  const c: TcpRepr = { ...s, payload: s.payload.slice() };
  if (s.sackBlocks !== undefined) c.sackBlocks = s.sackBlocks.map(([l, r]) => [l, r] as const);
  if (s.timestamps !== undefined) c.timestamps = [s.timestamps[0], s.timestamps[1]];
  return c;
}

export function bytes(n: number, from = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (from + i * 7) & 0xff;
  return b;
}

export function segLen(s: TcpRepr): number {
  return s.payload.length + (s.flags & SYN ? 1 : 0) + (s.flags & FIN ? 1 : 0);
}

/** Fixed options so that tests are deterministic: no timestamps, a small window, our ISN near the wrap. */
export function testOptions(extra: TcpOptions = {}): TcpOptions {
  return { random: () => OUR_ISN, timestamps: false, mss: 1000, recvBufferLimit: 8000, ...extra };
}

/** A connection and a scripted peer on a fake clock. */
export class Harness {
  now = 0;
  readonly conn: TcpConnection;
  /** Segments emitted by `conn`, cloned, not yet taken. */
  out: TcpRepr[] = [];
  /** The peer's next sequence number. */
  peerNxt = seqAdd(PEER_ISN, 1);
  /** What the peer acknowledges by default. */
  peerAck = seqAdd(OUR_ISN, 1);
  peerWindow = 0xffff;
  events = 0;

  constructor(conn: TcpConnection) {
    this.conn = conn;
  }

  /** Delivers a segment from the peer (defaults: next sequence, ACK of all we sent) and polls. */
  send(p: Partial<TcpRepr> = {}): void {
    const s: TcpRepr = {
      srcPort: PEER_PORT,
      dstPort: OUR_PORT,
      seq: this.peerNxt,
      ack: this.peerAck,
      flags: ACK,
      window: this.peerWindow,
      urgent: 0,
      payload: new Uint8Array(0),
      ...p,
    };
    this.conn.input(s, this.now);
    this.poll();
  }

  /** The peer sends `n` bytes of data in sequence (optionally with more flags). */
  data(n: number, flags = 0): Uint8Array {
    const payload = bytes(n, this.peerNxt);
    this.send({ payload, flags: ACK | flags });
    this.peerNxt = seqAdd(this.peerNxt, n + (flags & FIN ? 1 : 0));
    return payload;
  }

  poll(): void {
    this.conn.poll(this.now, (s) => this.out.push(cloneSeg(s)));
    this.events |= this.conn.takeEvents();
  }

  /** Moves the clock forward and polls. */
  advance(ms: number): void {
    this.now += ms;
    this.poll();
  }

  /** Moves the clock to the connection's next deadline and polls. */
  fire(): void {
    const d = this.conn.nextDeadline();
    if (d === Number.POSITIVE_INFINITY) throw new Error("no timer armed");
    this.now = Math.max(this.now, d);
    this.poll();
  }

  take(): TcpRepr[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  /** The one segment emitted since the last take; fails otherwise. */
  one(): TcpRepr {
    const o = this.take();
    if (o.length !== 1) throw new Error(`expected one segment, got ${o.length}: ${JSON.stringify(o.map(brief))}`);
    return o[0]!;
  }

  takeEvents(): number {
    const e = this.events;
    this.events = 0;
    return e;
  }
}

export function brief(s: TcpRepr): string {
  const f = ["FIN", "SYN", "RST", "PSH", "ACK"].filter((_, i) => s.flags & (1 << i)).join("|");
  return `${f} seq=${s.seq} ack=${s.ack} len=${s.payload.length} win=${s.window}`;
}

/** Changes to a segment; `undefined` removes an option. */
export type SegPatch = { [K in keyof TcpRepr]?: TcpRepr[K] | undefined };

/** The peer's SYN with the usual options. */
export function peerSyn(p: SegPatch = {}): TcpRepr {
  const s = {
    srcPort: PEER_PORT,
    dstPort: OUR_PORT,
    seq: PEER_ISN,
    ack: 0,
    flags: SYN,
    window: 0xffff,
    urgent: 0,
    mss: 1000,
    windowScale: 0,
    sackPermitted: true,
    payload: new Uint8Array(0),
    ...p,
  };
  for (const k of Object.keys(s) as (keyof TcpRepr)[]) if (s[k] === undefined) delete s[k];
  return s as TcpRepr;
}

// ---- one fixture per state (passive side unless noted) ----

export function synHeld(opts: TcpOptions = {}, syn: SegPatch = {}): Harness {
  const conn = TcpConnection.fromSyn(peerSyn(syn), 0, { config: testOptions(opts) });
  const h = new Harness(conn);
  h.events = conn.takeEvents();
  return h;
}

export function synReceived(opts: TcpOptions = {}, syn: SegPatch = {}): Harness {
  const h = synHeld(opts, syn);
  h.conn.accept();
  h.poll();
  return h;
}

export function established(opts: TcpOptions = {}, syn: SegPatch = {}): Harness {
  const h = synReceived(opts, syn);
  h.take();
  h.send();
  h.takeEvents();
  return h;
}

/** Active open: our SYN is out. */
export function synSent(opts: TcpOptions = {}): Harness {
  const conn = TcpConnection.connect({ localPort: OUR_PORT, remotePort: PEER_PORT }, { config: testOptions(opts) });
  const h = new Harness(conn);
  h.poll();
  return h;
}

export function finWait1(opts: TcpOptions = {}): Harness {
  const h = established(opts);
  h.conn.shutdownWrite();
  h.poll();
  h.take();
  return h;
}

export function finWait2(opts: TcpOptions = {}): Harness {
  const h = finWait1(opts);
  h.send({ ack: seqAdd(OUR_ISN, 2) });
  h.take();
  h.peerAck = seqAdd(OUR_ISN, 2);
  return h;
}

export function closeWait(opts: TcpOptions = {}): Harness {
  const h = established(opts);
  h.data(0, FIN);
  h.take();
  h.takeEvents();
  return h;
}

export function lastAck(opts: TcpOptions = {}): Harness {
  const h = closeWait(opts);
  h.conn.shutdownWrite();
  h.poll();
  h.take();
  return h;
}

export function closing(opts: TcpOptions = {}): Harness {
  const h = finWait1(opts);
  h.data(0, FIN); // acknowledges only our SYN, not our FIN
  h.take();
  return h;
}

export function timeWait(opts: TcpOptions = {}): Harness {
  const h = finWait2(opts);
  h.data(0, FIN);
  h.take();
  return h;
}
