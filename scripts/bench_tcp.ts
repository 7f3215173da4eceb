/**
 * Micro-benchmark of the TCP state machine (net/tcp): two connections joined in memory, no loss, no codec, no
 * TUN. Measures MB/s of payload from one owner's write() to the other's peek()/consume(), and CPU time per MB.
 * Not a test. Usage: ./scripts/deno run scripts/bench_tcp.ts [megabytes=200]
 */
import process from "node:process";
import type { TcpRepr } from "../net/wire/tcp_repr.ts";
import { TcpConnection, type TcpOptions } from "../net/tcp/mod.ts";

function run(label: string, total: number, tcp: TcpOptions, bidirectional: boolean): void {
  let isn = 1;
  const opts: TcpOptions = { ...tcp, random: () => (isn += 0x4000_0000) >>> 0 };
  const a = TcpConnection.connect({ localPort: 5000, remotePort: 80 }, { config: opts });
  let b: TcpConnection | null = null;
  let now = 0;
  // Segments go straight into the other side's input() during the emit callback: the payload is a view of
  // the sender's send ring, and input() copies it into the receiver's ring (the one copy per direction).
  const toB = (s: TcpRepr) => {
    if (b === null) {
      b = TcpConnection.fromSyn(s, now, { config: opts });
      b.accept();
    } else b.input(s, now);
  };
  const toA = (s: TcpRepr) => a.input(s, now);
  const chunk = new Uint8Array(256 * 1024).fill(0x5a);
  let sentA = 0, sentB = 0, gotA = 0, gotB = 0, segs = 0;
  const countA = (s: TcpRepr) => {
    segs++;
    toB(s);
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const goal = bidirectional ? 2 * total : total;
  while (gotA + gotB < goal) {
    now += 0.01;
    if (a.state === "ESTABLISHED" && sentA < total) {
      sentA += a.write(chunk.subarray(0, Math.min(chunk.length, total - sentA)));
    }
    const bb = b as TcpConnection | null;
    if (bidirectional && bb !== null && bb.state === "ESTABLISHED" && sentB < total) {
      sentB += bb.write(chunk.subarray(0, Math.min(chunk.length, total - sentB)));
    }
    a.poll(now, countA);
    if (bb !== null) {
      bb.takeEvents();
      while (bb.readable > 0) {
        const n = bb.peek().length;
        gotB += n;
        bb.consume(n);
      }
      bb.poll(now, toA);
    }
    a.takeEvents();
    while (a.readable > 0) {
      const n = a.peek().length;
      gotA += n;
      a.consume(n);
    }
    if (now > 1e7) throw new Error(`stalled: ${a.state} ${bb?.state}`);
  }
  const ms = performance.now() - t0;
  const mb = (gotA + gotB) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  console.log(
    `${label.padEnd(50)} ${(mb / (ms / 1000)).toFixed(0).padStart(6)} MB/s  ` +
      `${(cpuMs / mb).toFixed(2)} ms CPU/MB  ${segs} data-direction segments`,
  );
}

const megabytes = Number(Deno.args[0] ?? 200);
const total = megabytes * 1e6;
const big = { recvBufferLimit: 4 << 20, sendBufferLimit: 4 << 20 };
console.log(`net/tcp state machine, ${megabytes} MB per direction, in memory (${Deno.build.os}/${Deno.build.arch})`);
run("MSS 1460, 1 MiB buffers, one way", total, {}, false);
run("MSS 1460, 4 MiB buffers, one way", total, big, false);
run("MSS 65495 (TUN MTU 65535), 4 MiB buffers, one way", total, { mss: 65495, ...big }, false);
run("MSS 65495, 4 MiB buffers, both ways at once", total, { mss: 65495, ...big }, true);
