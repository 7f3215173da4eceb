/**
 * A tiny in-memory network between two of our connections with a fake clock: seeded loss, reordering,
 * duplication and delay. Used by the simulation test and by scripts/bench_tcp.ts.
 */
import type { TcpRepr } from "../wire/tcp_repr.ts";
import { TcpConnection } from "./connection.ts";
import type { TcpOptions } from "./options.ts";
import { TcpEvent } from "./options.ts";

/** mulberry32: a small seeded PRNG, good enough for fault injection. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimFaults {
  loss?: number;
  duplicate?: number;
  reorder?: number;
  /** One-way delay in ms. */
  delayMs?: number;
}

export interface SimOptions extends SimFaults {
  seed: number;
  /** Bytes each side sends. */
  bytesAtoB: number;
  bytesBtoA: number;
  tcp?: TcpOptions;
  /** Largest write per call. */
  writeChunk?: number;
  /** Largest read per wake-up (a slow reader keeps the window small). */
  readChunk?: number;
  /** Give up after this much simulated time. */
  maxSimMs?: number;
  /** Check content byte by byte (tests) or only count (benchmark). */
  verify?: boolean;
}

export interface SimResult {
  receivedAtB: number;
  receivedAtA: number;
  errors: string[];
  stateA: string;
  stateB: string;
  simMs: number;
  segments: number;
  a: TcpConnection | null;
  b: TcpConnection | null;
}

/** The byte at offset `i` of the stream from side `side`. */
export function streamByte(side: number, i: number): number {
  return (i * 131 + (i >>> 9) + side * 17) & 0xff;
}

function fill(side: number, from: number, dst: Uint8Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = streamByte(side, from + i);
}

interface Packet {
  at: number;
  toB: boolean;
  seg: TcpRepr;
}

class Side {
  conn: TcpConnection | null = null;
  sent = 0;
  received = 0;
  closedWrite = false;
  readonly buf: Uint8Array;
  constructor(readonly id: number, readonly total: number, readonly chunk: number) {
    this.buf = new Uint8Array(chunk);
  }
}

export function simulate(o: SimOptions): SimResult {
  const rand = prng(o.seed);
  const delay = o.delayMs ?? 5;
  const chunk = o.writeChunk ?? 16384;
  const readChunk = o.readChunk ?? Number.POSITIVE_INFINITY;
  const verify = o.verify ?? true;
  const errors: string[] = [];
  const tcp: TcpOptions = { ...o.tcp, random: () => Math.floor(rand() * 2 ** 32) };
  const queue: Packet[] = [];
  let now = 0;
  let segments = 0;
  const A = new Side(0, o.bytesAtoB, chunk);
  const B = new Side(1, o.bytesBtoA, chunk);
  A.conn = TcpConnection.connect({ localPort: 5000, remotePort: 80 }, { config: tcp });

  const send = (toB: boolean) => (s: TcpRepr) => {
    segments++;
    if (rand() < (o.loss ?? 0)) return;
    const copies = rand() < (o.duplicate ?? 0) ? 2 : 1;
    for (let k = 0; k < copies; k++) {
      const jitter = rand() < (o.reorder ?? 0) ? rand() * 3 * delay : 0;
      const seg: TcpRepr = { ...s, payload: s.payload.slice() };
      if (s.sackBlocks !== undefined) seg.sackBlocks = s.sackBlocks.map(([l, r]) => [l, r] as const);
      if (s.timestamps !== undefined) seg.timestamps = [s.timestamps[0], s.timestamps[1]];
      queue.push({ at: now + delay + jitter + k * 0.1, toB, seg });
    }
  };
  const toB = send(true);
  const toA = send(false);

  const app = (s: Side) => {
    const c = s.conn;
    if (c === null) return;
    const ev = c.takeEvents();
    if (ev & TcpEvent.Incoming) c.accept();
    if (ev & TcpEvent.Reset) errors.push(`side ${s.id} reset: ${c.error}`);
    let budget = readChunk;
    while (c.readable > 0 && budget > 0) {
      const v = c.peek(budget);
      if (verify) {
        for (let i = 0; i < v.length; i++) {
          if (v[i] !== streamByte(1 - s.id, s.received + i)) {
            errors.push(`side ${s.id}: byte ${s.received + i} wrong`);
            break;
          }
        }
      }
      s.received += v.length;
      budget -= v.length;
      c.consume(v.length);
    }
    if (c.state === "ESTABLISHED" || c.state === "CLOSE-WAIT") {
      while (s.sent < s.total) {
        const n = Math.min(chunk, s.total - s.sent, c.writable);
        if (n <= 0) break;
        const b = s.buf.subarray(0, n);
        if (verify) fill(s.id, s.sent, b);
        s.sent += c.write(b);
      }
      if (s.sent === s.total && !s.closedWrite) {
        s.closedWrite = true;
        c.shutdownWrite();
      }
    }
  };

  const maxMs = o.maxSimMs ?? 3_600_000;
  let guard = 0;
  while (true) {
    if (++guard > 50_000_000) {
      errors.push("event limit");
      break;
    }
    // Deliver everything due.
    queue.sort((x, y) => x.at - y.at);
    let i = 0;
    while (i < queue.length && queue[i]!.at <= now) {
      const p = queue[i++]!;
      if (p.toB) {
        if (B.conn === null) {
          B.conn = TcpConnection.fromSyn(p.seg, now, { config: tcp });
        } else B.conn.input(p.seg, now);
      } else A.conn!.input(p.seg, now);
    }
    queue.splice(0, i);
    for (let round = 0; round < 2; round++) {
      app(A);
      app(B);
      A.conn!.poll(now, toB);
      B.conn?.poll(now, toA);
    }
    const doneA = A.conn!.state === "CLOSED";
    const doneB = B.conn !== null && B.conn.state === "CLOSED";
    if (doneA && doneB && queue.length === 0) break;
    let next = Math.min(A.conn!.nextDeadline(), B.conn?.nextDeadline() ?? Number.POSITIVE_INFINITY);
    for (const p of queue) if (p.at < next) next = p.at;
    if (next === Number.POSITIVE_INFINITY) {
      if (!(doneA && doneB)) errors.push(`stalled: A ${A.conn!.state}, B ${B.conn?.state}`);
      break;
    }
    if (next > maxMs) {
      errors.push(`simulated time limit: A ${A.conn!.state}, B ${B.conn?.state}`);
      break;
    }
    now = Math.max(now, next);
  }
  // A closed connection keeps what it received: the owner reads the rest afterwards.
  for (const s of [A, B]) {
    const c = s.conn;
    if (c === null) continue;
    while (c.readable > 0) {
      const v = c.peek();
      if (verify && v.some((x, i) => x !== streamByte(1 - s.id, s.received + i))) {
        errors.push(`side ${s.id}: wrong byte after close`);
      }
      s.received += v.length;
      c.consume(v.length);
    }
  }
  return {
    receivedAtB: B.received,
    receivedAtA: A.received,
    errors,
    stateA: A.conn!.state,
    stateB: B.conn?.state ?? "none",
    simMs: now,
    segments,
    a: A.conn,
    b: B.conn,
  };
}
