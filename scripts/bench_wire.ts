/**
 * Micro-benchmark of the net/wire hot path (not a test): packets per second for
 *   1. classify() + parseTcp() of an inbound 1400-byte-payload IPv4 TCP segment, checksums verified and not;
 *   2. buildTcpPacket() of an outbound 1400-byte-payload TCP packet (IPv4 and IPv6), checksums full and partial;
 *   3. flow key + Map lookup for an IPv4 and an IPv6 packet.
 * Runs about half a second per case. Usage: ./scripts/deno run scripts/bench_wire.ts
 */
import {
  buildTcpPacket,
  classify,
  ipv6FromString,
  PacketInfo,
  parseTcp,
  type TcpRepr,
  TcpSegment,
} from "../net/wire/mod.ts";

const PAYLOAD = new Uint8Array(1400).map((_, i) => i);
const tcp: TcpRepr = {
  srcPort: 40000,
  dstPort: 8080,
  seq: 123456789,
  ack: 987654321,
  flags: 0x18,
  window: 512,
  urgent: 0,
  timestamps: [1, 2],
  payload: PAYLOAD,
};
const v4 = { src: 0xc6120001, dst: 0xc6120002 };
const v6 = { src: ipv6FromString("fd00::1"), dst: ipv6FromString("fd00::2") };

function bench(name: string, fn: () => void, perPacket = PAYLOAD.length): void {
  for (let i = 0; i < 20000; i++) fn(); // warm up
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < 500) {
    for (let i = 0; i < 2000; i++) fn();
    n += 2000;
    now = performance.now();
  }
  const pps = n / ((now - start) / 1000);
  const rate = perPacket > 0 ? `  (${((pps * perPacket * 8) / 1e9).toFixed(1)} Gbit/s of payload)` : "";
  console.log(`${name.padEnd(52)} ${(pps / 1e6).toFixed(2).padStart(6)} Mpps${rate}`);
}

const info = new PacketInfo();
let sink = 0;
for (const [family, ip] of [["IPv4", v4], ["IPv6", v6]] as const) {
  const packet = new Uint8Array(2048);
  const len = buildTcpPacket(packet, ip, tcp);
  const p = packet.subarray(0, len);
  for (const verify of [true, false]) {
    const options = { verifyChecksums: verify };
    bench(`classify + parseTcp ${family}, checksums ${verify ? "verified" : "skipped"}`, () => {
      if (classify(p, info, options) !== null) throw new Error("drop");
      const r = parseTcp(new TcpSegment(p.subarray(info.transportOffset, info.ipLength)), null);
      if (typeof r !== "string") sink += r.payload.length;
    });
  }
  const out = new Uint8Array(2048);
  for (const checksum of ["full", "partial"] as const) {
    const options = { checksum };
    bench(`buildTcpPacket ${family} 1400 B, checksum ${checksum}`, () => {
      sink += buildTcpPacket(out, ip, tcp, options);
    });
  }
  const flows = new Map<string, number>();
  for (let i = 0; i < 10000; i++) flows.set(String(i), i);
  classify(p, info);
  flows.set(info.flowKey(p), 1);
  bench(`flowKey + Map lookup ${family} (10k flows)`, () => {
    sink += flows.get(info.flowKey(p)) ?? 0;
  }, 0);
}
if (sink === 0) console.log("unreachable");
