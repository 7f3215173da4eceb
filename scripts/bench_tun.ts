/**
 * TUN benchmark (a script, not a test): packets/s and CPU per packet for reading and writing floods of 64- and
 * 1400-byte IP packets, and bulk TCP through the device at MTU 1500 and 65535.
 *
 *   sudo ./scripts/deno run -A scripts/bench_tun.ts [--seconds 2] [--only read|write|tcp]
 *
 * Needs root, iproute2, gcc (for the UDP flood sender, built into .bench/) and iperf3 (for the TCP part). It makes
 * one namespace, tpt-ffi-bench-<pid>, runs itself inside it (`--inner`), and deletes it at the end.
 *
 * Read: a C sender (sendmmsg, 64 packets per call) floods UDP to a routed address; the device reads for N seconds.
 * Write: the device writes pre-built UDP packets to an unbound local port as fast as it can (the kernel drops them
 * after routing and checksum checks; ICMP replies are rate-limited).
 * TCP: iperf3 client and server are both in the namespace; the client connects to 198.18.1.1, whose packets the
 * bench reads from the device, swaps source and destination address (the checksum does not change), and writes
 * back, so every byte crosses the device twice through JS.
 */
import { createTun, type LinuxTun, type LinuxTunOptions } from "../ffi/tun_linux.ts";
import { Netlink } from "../ffi/netlink.ts";
import { checksum } from "../net/wire/checksum.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const args = Deno.args;
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const SECONDS = Number(flag("--seconds", "2"));

const FLOOD_C = String.raw`
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
/* flood DST PORT SIZE SECONDS: sends UDP datagrams of SIZE-28 payload bytes (SIZE-byte IPv4 packets). */
int main(int argc, char **argv) {
  if (argc != 5) return 2;
  int payload = atoi(argv[3]) - 28;
  double seconds = atof(argv[4]);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
  inet_pton(AF_INET, argv[1], &to.sin_addr);
  if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 1; }
  static char buf[65536];
  struct mmsghdr msgs[64];
  struct iovec iov[64];
  for (int i = 0; i < 64; i++) {
    iov[i].iov_base = buf; iov[i].iov_len = payload;
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
  }
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long sent = 0;
  for (long loop = 0; loop < 100000000; loop++) {
    int n = sendmmsg(fd, msgs, 64, 0);
    if (n > 0) sent += n;
    if ((loop & 15) == 0) {
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds) break;
    }
  }
  printf("%ld\n", sent);
  return 0;
}
`;

/** CPU seconds (user + system) this process used so far, from getrusage(RUSAGE_SELF). */
function cpuSeconds(lib: Deno.DynamicLibrary<{ getrusage: { parameters: ["i32", "buffer"]; result: "i32" } }>) {
  const ru = new BigInt64Array(18);
  lib.symbols.getrusage(0, new Uint8Array(ru.buffer));
  return Number(ru[0]!) + Number(ru[1]!) / 1e6 + Number(ru[2]!) + Number(ru[3]!) / 1e6;
}

async function sh(argv: string[]): Promise<string> {
  const out = await new Deno.Command(argv[0]!, { args: argv.slice(1), cwd: ROOT, stderr: "inherit" }).output();
  if (out.code !== 0) throw new Error(`${argv.join(" ")} exited with ${out.code}`);
  return new TextDecoder().decode(out.stdout);
}

function setUp(options: LinuxTunOptions): { tun: LinuxTun; nl: Netlink } {
  const tun = createTun({ name: "tp0", ...options });
  const nl = Netlink.open();
  nl.disableIpv6AddrGen("tp0");
  nl.setLinkUp("tp0");
  nl.addAddress("tp0", "198.18.0.1/32");
  nl.addRoute({ dst: "198.18.1.0/24", dev: "tp0" });
  return { tun, nl };
}

type Rusage = Parameters<typeof cpuSeconds>[0];

async function benchRead(lib: Rusage, size: number): Promise<string> {
  const { tun, nl } = setUp({});
  try {
    const flood = new Deno.Command(`${ROOT}.bench/flood`, {
      args: ["198.18.1.5", "9999", String(size), String(SECONDS + 0.5)],
      stdout: "piped",
    }).spawn();
    await new Promise((r) => setTimeout(r, 200)); // let the flood start
    let packets = 0;
    const cpu0 = cpuSeconds(lib), t0 = performance.now();
    for (let i = 0; i < 10_000_000 && performance.now() - t0 < SECONDS * 1000; i++) {
      packets += (await tun.read()).length;
    }
    const elapsed = (performance.now() - t0) / 1000, cpu = cpuSeconds(lib) - cpu0;
    const sent = Number(new TextDecoder().decode((await flood.output()).stdout).trim());
    return `read  ${size}B: ${fmt(packets / elapsed)} packets/s, ` +
      `${(cpu / packets * 1e9).toFixed(0)} ns CPU/packet, ${(cpu / elapsed * 100).toFixed(0)}% of a core ` +
      `(sender: ${fmt(sent / (SECONDS + 0.5))}/s, drops: ${tun.stats.readDrops})`;
  } finally {
    nl.close();
    tun.close();
  }
}

async function benchWrite(lib: Rusage, size: number): Promise<string> {
  const { tun, nl } = setUp({});
  try {
    const packets = Array.from({ length: tun.batchSize }, (_, i) => udp4(size, 1000 + i));
    let written = 0;
    const cpu0 = cpuSeconds(lib), t0 = performance.now();
    for (let i = 0; i < 100_000_000 && performance.now() - t0 < SECONDS * 1000; i++) {
      written += tun.write(packets);
      // Yield now and then, as the router would.
      if (i % 64 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    const elapsed = (performance.now() - t0) / 1000, cpu = cpuSeconds(lib) - cpu0;
    return `write ${size}B: ${fmt(written / elapsed)} packets/s, ${(cpu / written * 1e9).toFixed(0)} ns CPU/packet ` +
      `(drops: ${tun.stats.writeDrops})`;
  } finally {
    nl.close();
    tun.close();
  }
}

async function benchTcp(options: LinuxTunOptions, label: string): Promise<string> {
  const { tun, nl } = setUp(options);
  const server = new Deno.Command("iperf3", { args: ["-s", "-1", "-B", "198.18.0.1", "-p", "5201"], stdout: "null" })
    .spawn();
  let stop = false, bytes = 0, packets = 0;
  const reflector = (async () => {
    for (let i = 0; i < 100_000_000 && !stop; i++) {
      const batch = await tun.read();
      if (batch.length === 0 || stop) break;
      for (const p of batch) {
        bytes += p.length;
        if (p[0]! >> 4 !== 4) continue;
        const src = p.slice(12, 16); // swap addresses: the TCP checksum covers their sum, which stays the same
        p.copyWithin(12, 16, 20);
        p.set(src, 16);
      }
      packets += batch.length;
      tun.write(batch.filter((p) => p[0]! >> 4 === 4));
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, 300));
    const out = await sh(["iperf3", "-c", "198.18.1.1", "-p", "5201", "-t", String(SECONDS), "-J"]);
    const report = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
    const gbps = report.end.sum_received.bits_per_second / 1e9;
    return `tcp ${label}: ${gbps.toFixed(2)} Gbit/s, ${(bytes / Math.max(packets, 1)).toFixed(0)} bytes/packet read`;
  } finally {
    stop = true;
    try {
      server.kill("SIGTERM"); // by pid; `-1` makes it exit by itself after one test
    } catch { /* already exited */ }
    await server.status;
    nl.close();
    tun.close();
    await reflector;
  }
}

function udp4(size: number, sport: number): Uint8Array {
  const p = new Uint8Array(size), d = new DataView(p.buffer);
  p[0] = 0x45;
  d.setUint16(2, size);
  p[8] = 64;
  p[9] = 17;
  p.set([198, 18, 1, 5], 12);
  p.set([198, 18, 0, 1], 16);
  d.setUint16(10, checksum(p, 0, 20));
  d.setUint16(20, sport);
  d.setUint16(22, 9); // discard; nothing listens
  d.setUint16(24, size - 20);
  return p; // UDP checksum 0: none (RFC 768)
}

const fmt = (n: number) => n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(0)}k`;

async function inner(): Promise<void> {
  const lib = Deno.dlopen("libc.so.6", { getrusage: { parameters: ["i32", "buffer"], result: "i32" } } as const);
  const only = flag("--only", "");
  try {
    if (!only || only === "read") {
      for (const size of [64, 1400]) console.log(await benchRead(lib, size));
    }
    if (!only || only === "write") { for (const size of [64, 1400]) console.log(await benchWrite(lib, size)); }
    if (!only || only === "tcp") {
      console.log(await benchTcp({}, "MTU 1500"));
      console.log(await benchTcp({ mtu: 65535 }, "MTU 65535"));
    }
  } finally {
    lib.close();
  }
}

async function outer(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("bench_tun needs root (it creates a network namespace): run it with sudo");
  await Deno.mkdir(`${ROOT}.bench`, { recursive: true });
  await Deno.writeTextFile(`${ROOT}.bench/flood.c`, FLOOD_C);
  await sh(["gcc", "-O2", "-o", `${ROOT}.bench/flood`, `${ROOT}.bench/flood.c`]).catch((e) => {
    throw new Error(`bench_tun needs gcc to build its UDP flood sender: ${(e as Error).message}`);
  });
  const ns = `tpt-ffi-bench-${Deno.pid}`;
  await sh(["ip", "netns", "add", ns]);
  try {
    await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        "--no-check",
        import.meta.filename!,
        "--inner",
        ...args,
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const status = await child.status;
    if (!status.success) throw new Error(`the benchmark inside ${ns} failed (exit ${status.code})`);
  } finally {
    await sh(["ip", "netns", "delete", ns]);
  }
}

if (import.meta.main) {
  if (args.includes("--inner")) await inner();
  else await outer();
}
