/**
 * Stack benchmark (a script, not a test): one TCP connection from the kernel through a TUN into tp's router and an
 * in-process sink (upload), and from an in-process source back to the kernel (download), beside the kernel's own
 * loopback path measured in the same run with the same client. Prints MB/s, the ratio to loopback, and CPU time
 * per MB (the router's process, and the whole machine).
 *
 *   sudo ./scripts/deno run -A scripts/bench_stack.ts [--megabytes 1000] [--configs plain,mtu64k]
 *
 * Configurations: `plain` (MTU 1500), `mtu64k` (MTU 65535, as the daemon's TUN: the kernel's MSS is 65495). A
 * configuration may be named more than once, to take turns. The router
 * runs in tests/stack_child.ts inside a namespace of its own (tpt-stack-bench-<pid>), deleted at the end; the
 * client is socat (256 KiB buffers).
 */
import { startStackChild } from "../tests/stack_child.ts";

const args = Deno.args;
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MB = Number(flag("--megabytes", "1000"));
const BYTES = MB * 1e6;
const CONFIGS = flag("--configs", "plain,mtu64k").split(",");
const NS = `tpt-stack-bench-${Deno.pid}`;
const SVC = "198.19.0.10";

async function sh(argv: string[]): Promise<string> {
  const out = await new Deno.Command(argv[0]!, { args: argv.slice(1), stdout: "piped", stderr: "piped" }).output();
  if (out.code !== 0) throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  return new TextDecoder().decode(out.stdout);
}

/** Busy jiffies of the machine (user+nice+system+irq+softirq+steal) from /proc/stat. */
function machineBusy(): number {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
}

/** utime + stime of a process, in jiffies (/proc/PID/stat fields 14 and 15). */
function processBusy(pid: number): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

const HZ = 100; // USER_HZ on Linux

interface Row {
  config: string;
  direction: string;
  mbps: number;
  routerMsPerMb: number | null;
  machineMsPerMb: number;
}

/** Runs a client shell command in the namespace; returns seconds and machine / child CPU jiffies used. */
async function timed(cmd: string, childPid: number | null): Promise<{ s: number; machine: number; child: number }> {
  const m0 = machineBusy(), c0 = childPid ? processBusy(childPid) : 0, t0 = performance.now();
  await sh(["ip", "netns", "exec", NS, "bash", "-c", cmd]);
  const s = (performance.now() - t0) / 1000;
  return { s, machine: machineBusy() - m0, child: childPid ? processBusy(childPid) - c0 : 0 };
}

async function withChild<T>(flags: string[], fn: (pid: number) => Promise<T>): Promise<T> {
  const child = await startStackChild(NS, flags);
  try {
    return await fn(child.pid);
  } finally {
    await child.stop();
  }
}

const CLIENT = "socat -u -b 262144";
const rows: Row[] = [];
const row = (config: string, direction: string, r: { s: number; machine: number; child: number }, child: boolean) =>
  rows.push({
    config,
    direction,
    mbps: MB / r.s,
    routerMsPerMb: child ? r.child * (1000 / HZ) / MB : null,
    machineMsPerMb: r.machine * (1000 / HZ) / MB,
  });

if (Deno.uid() !== 0) throw new Error("bench_stack needs root (network namespaces and a TUN device)");
await sh(["ip", "netns", "add", NS]);
try {
  await sh(["ip", "-n", NS, "link", "set", "lo", "up"]);
  // The kernel's own path: loopback, same client, same amount.
  const up = await (async () => {
    const sink = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        NS,
        "socat",
        "-u",
        "-b",
        "262144",
        "TCP-LISTEN:7000,bind=127.0.0.1,reuseaddr",
        "OPEN:/dev/null",
      ],
    }).spawn();
    await new Promise((r) => setTimeout(r, 300));
    try {
      return await timed(`head -c ${BYTES} /dev/zero | ${CLIENT} - TCP:127.0.0.1:7000`, null);
    } finally {
      await sink.status;
    }
  })();
  row("kernel loopback", "upload", up, false);
  const down = await (async () => {
    const src = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        NS,
        "bash",
        "-c",
        `head -c ${BYTES} /dev/zero | ${CLIENT} - TCP-LISTEN:7001,bind=127.0.0.1,reuseaddr`,
      ],
    }).spawn();
    await new Promise((r) => setTimeout(r, 300));
    try {
      return await timed(`${CLIENT} TCP:127.0.0.1:7001 OPEN:/dev/null`, null);
    } finally {
      await src.status;
    }
  })();
  row("kernel loopback", "download", down, false);

  for (const config of CONFIGS) {
    const flags = ["--verify", "false", "--source-bytes", String(BYTES), "--name", "tpt0"];
    if (config === "mtu64k") flags.push("--mtu", "65535");
    await withChild(flags, async (pid) => {
      row(`tp ${config}`, "upload", await timed(`head -c ${BYTES} /dev/zero | ${CLIENT} - TCP:${SVC}:9000`, pid), true);
      row(`tp ${config}`, "download", await timed(`${CLIENT} TCP:${SVC}:9001 OPEN:/dev/null`, pid), true);
    });
  }
} finally {
  await sh(["ip", "netns", "delete", NS]).catch((e) => console.error(String(e)));
}

const ref = (d: string) => rows.find((r) => r.config === "kernel loopback" && r.direction === d)!.mbps;
console.log(
  `stack benchmark: one TCP connection, ${MB} MB each way, socat client (${Deno.build.os}/${Deno.build.arch})`,
);
console.log(
  "| path | direction | MB/s | vs loopback | router CPU ms/MB | machine CPU ms/MB |\n|---|---|---:|---:|---:|---:|",
);
for (const r of rows) {
  console.log(
    `| ${r.config} | ${r.direction} | ${r.mbps.toFixed(0)} | ${(r.mbps / ref(r.direction)).toFixed(3)} | ${
      r.routerMsPerMb === null ? "-" : r.routerMsPerMb.toFixed(2)
    } | ${r.machineMsPerMb.toFixed(2)} |`,
  );
}
