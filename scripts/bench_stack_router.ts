/**
 * Micro-benchmark of the router (not a test): packets/s and MB/s of one bulk TCP connection through `Router`,
 * with no kernel. The script plays the app's kernel: it builds the handshake and the data packets itself
 * (prebuilt before the clock starts), paces them by the router's advertised window, and acknowledges what the
 * router sends. The owner is an in-process sink (inbound) or source (outbound).
 *
 *   ./scripts/deno run scripts/bench_stack_router.ts [--megabytes 64] [--only in|out] [--device queue|memory]
 *
 * Devices: `queue` is a two-queue device like `MemoryTun` whose `read` resolves as soon as packets are queued, so
 * the figure is the router's own cost; `memory` is `MemoryTun` itself, whose `read` always waits a macrotask (a
 * timer), which caps the rate at one batch per timer tick.
 */
import process from "node:process";
import { MemoryTun } from "../ffi/tun_memory.ts";
import { newTunStats, type TunDevice, type TunStats } from "../ffi/tun.ts";
import { Router } from "../net/router/router.ts";
import type { RouterOwner, TcpSocket } from "../net/router/owner.ts";
import { buildTcpPacket, classify, PacketInfo, TcpFlags } from "../net/wire/mod.ts";

const args = Deno.args;
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MEGABYTES = Number(flag("--megabytes", "64"));
const ONLY = flag("--only", "");
const DEVICES = flag("--device", "queue,memory").split(",");

const APP = 0xc6120001; // 198.18.0.1
const SERVICE = 0xc6130a0a; // 198.19.10.10
const APP_PORT = 40000, SERVICE_PORT = 8080;
const MSS = 1448;
const BATCH = 256;

/** Like MemoryTun, but `read` resolves without waiting for a timer when packets are queued. */
class QueueTun implements TunDevice {
  readonly name = "queue0";
  readonly mtu = 1500;
  readonly batchSize = BATCH;
  readonly stats: TunStats = newTunStats();
  #in: Uint8Array[] = [];
  #out: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #wakeWriter: (() => void) | undefined;
  #closed = false;
  inject(...p: Uint8Array[]): void {
    for (const x of p) this.#in.push(x);
    this.#wake?.();
  }
  takeWritten(): Uint8Array[] {
    return this.#out.splice(0);
  }
  async read(): Promise<Uint8Array[]> {
    while (this.#in.length === 0 && !this.#closed) {
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    if (this.#closed) return [];
    return this.#in.splice(0, this.batchSize);
  }
  write(packets: readonly Uint8Array[]): number {
    for (const p of packets) this.#out.push(p.slice());
    this.#wakeWriter?.();
    return packets.length;
  }
  /** Waits for at least one written packet and takes them all. */
  async waitWritten(): Promise<Uint8Array[]> {
    for (let i = 0; i < 1_000_000 && this.#out.length === 0; i++) {
      await new Promise<void>((r) => (this.#wakeWriter = r));
      this.#wakeWriter = undefined;
    }
    return this.takeWritten();
  }
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}

type BenchTun = (QueueTun | MemoryTun) & TunDevice;

const info = new PacketInfo();
const read32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

function packet(seq: number, ack: number, flags: number, payload = new Uint8Array(0), extra = {}): Uint8Array {
  const out = new Uint8Array(1500);
  const n = buildTcpPacket(out, { src: APP, dst: SERVICE }, {
    srcPort: APP_PORT,
    dstPort: SERVICE_PORT,
    seq,
    ack,
    flags,
    window: 0xffff,
    urgent: 0,
    payload,
    ...extra,
  });
  return out.subarray(0, n);
}

/** The router's segments: the highest ACK and right window edge, and payload bytes with the next expected seq. */
function scan(packets: Uint8Array[], st: { ack: number; edge: number; rcvNxt: number; bytes: number; wscale: number }) {
  for (const p of packets) {
    if (classify(p, info) !== null || info.protocol !== 6) continue;
    const o = info.transportOffset;
    const flags = info.tcpFlags;
    if (flags & TcpFlags.ACK) {
      const ack = read32(p, o + 8);
      if (((ack - st.ack) | 0) > 0) st.ack = ack;
      const win = ((p[o + 14]! << 8) | p[o + 15]!) << (flags & TcpFlags.SYN ? 0 : st.wscale);
      const edge = (ack + win) >>> 0;
      if (((edge - st.edge) | 0) > 0) st.edge = edge;
    }
    const len = info.payloadEnd - info.payloadOffset;
    if (len > 0 && read32(p, o + 4) === st.rcvNxt) {
      st.rcvNxt = (st.rcvNxt + len) >>> 0;
      st.bytes += len;
    }
  }
}

async function once(dev: BenchTun, label: string, inbound: boolean): Promise<string> {
  const total = MEGABYTES * 1e6;
  let received = 0;
  let sock: TcpSocket | undefined;
  const chunk = new Uint8Array(256 * 1024).fill(0x5a);
  let sent = 0;
  const pump = () => {
    while (sock !== undefined && sent < total) {
      const n = sock.write(chunk.subarray(0, Math.min(chunk.length, total - sent)));
      sent += n;
      if (n === 0) break;
    }
    if (sent >= total) sock?.end();
  };
  const owner: RouterOwner = {
    openTcp(s) {
      sock = s;
      s.onData = (d) => {
        received += d.length;
        return true;
      };
      s.onWritable = () => {
        if (!inbound) pump();
      };
      s.accept();
    },
    openUdp(f) {
      f.refuse("refused");
    },
  };
  const router = new Router(dev, owner, { tcp: { recvBufferLimit: 4 << 20, sendBufferLimit: 4 << 20 } });
  const running = router.run();
  const wait = async (): Promise<Uint8Array[]> =>
    dev instanceof MemoryTun ? await dev.waitWritten(1, 5000) : await (dev as QueueTun).waitWritten();
  const ISN = 1000;
  dev.inject(packet(ISN, 0, TcpFlags.SYN, undefined, { mss: 1460, windowScale: 7 }));
  const synAck = (await wait()).find((p) => classify(p, info) === null && info.tcpFlags & TcpFlags.SYN)!;
  const theirIsn = read32(synAck, info.transportOffset + 4);
  const st = { ack: (ISN + 1) >>> 0, edge: 0, rcvNxt: (theirIsn + 1) >>> 0, bytes: 0, wscale: 0 };
  scan([synAck], st);
  // The SYN-ACK's window scale option: find kind 3.
  {
    const o = info.transportOffset, end = o + ((synAck[o + 12]! >> 4) * 4);
    for (let i = o + 20; i < end;) {
      const k = synAck[i]!;
      if (k === 0) break;
      if (k === 1) {
        i++;
        continue;
      }
      if (k === 3) st.wscale = synAck[i + 2]!;
      i += synAck[i + 1]!;
    }
  }
  dev.inject(packet((ISN + 1) >>> 0, st.rcvNxt, TcpFlags.ACK));

  // Inbound data, prebuilt (the clock has not started).
  const data: Uint8Array[] = [];
  if (inbound) {
    const payload = new Uint8Array(MSS).fill(0xa5);
    for (let off = 0; off < total; off += MSS) {
      data.push(
        packet((ISN + 1 + off) >>> 0, st.rcvNxt, TcpFlags.ACK, payload.subarray(0, Math.min(MSS, total - off))),
      );
    }
  }
  await new Promise((r) => setTimeout(r, 10));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let packets = 0;
  if (inbound) {
    let next = 0;
    for (let rounds = 0; received < total && rounds < 10_000_000; rounds++) {
      const seqNext = (ISN + 1 + next * MSS) >>> 0;
      let room = (st.edge - seqNext) | 0;
      const batch: Uint8Array[] = [];
      while (next < data.length && room >= MSS && batch.length < BATCH) {
        batch.push(data[next++]!);
        room -= MSS;
      }
      if (batch.length) dev.inject(...batch);
      packets += batch.length;
      scan(await wait(), st);
      if (performance.now() - t0 > 60_000) throw new Error(`stalled after ${received} bytes`);
    }
  } else {
    pump();
    for (let rounds = 0; st.bytes < total && rounds < 10_000_000; rounds++) {
      const got = await wait();
      const before = st.bytes;
      scan(got, st);
      packets += got.length;
      if (st.bytes !== before) dev.inject(packet(st.ack, st.rcvNxt, TcpFlags.ACK));
      if (performance.now() - t0 > 60_000) throw new Error(`stalled after ${st.bytes} bytes`);
    }
  }
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  router.stop();
  dev.close();
  await running;
  const mb = total / 1e6;
  return `${label.padEnd(34)} ${(packets / s / 1000).toFixed(0).padStart(6)} kpackets/s ${
    (mb / s).toFixed(0).padStart(6)
  } MB/s  ${((cpu.user + cpu.system) / 1000 / mb).toFixed(2)} ms CPU/MB`;
}

console.log(`router micro-benchmark, ${MEGABYTES} MB per case, MSS ${MSS} (${Deno.build.os}/${Deno.build.arch})`);
for (const device of DEVICES) {
  for (const dir of ["in", "out"]) {
    if (ONLY && ONLY !== dir) continue;
    const dev: BenchTun = device === "memory" ? new MemoryTun({ batchSize: BATCH }) : new QueueTun();
    const label = `${device === "memory" ? "MemoryTun" : "QueueTun"} ${
      dir === "in" ? "inbound (app->sink)" : "outbound (source->app)"
    }`;
    console.log(await once(dev, label, dir === "in"));
  }
}
