/**
 * Benchmark (issue 8): tp connected through the Kubernetes API server's port-forward (the API server test double,
 * in the lab's cluster namespace as an API server would be) against tp connected with --manager-url, in the same
 * run, on a lab of its own: single-stream TCP upload and download (iperf3) and TCP request/response latency (64 B on
 * one connection). The port-forward layer should cost at most 20 % of throughput. It also reports CPU seconds per GB
 * of the daemon, the manager and the double: on this machine the double (which stands in for an API server on a
 * machine of its own) takes its CPU from the same two cores as tp, so the throughput ratio charges its work to tp;
 * the daemon's CPU per byte is the port-forward's cost to tp itself.
 *
 *   ./scripts/deno run -A scripts/bench_portforward.ts [--lab-id ID] [--rounds 3] [--no-pin] [-o json]
 *
 * Needs root, the lab's tools, iperf3 and openssl (the double's certificates).
 */
import { LAB, ROOT } from "../tests/lab.ts";
import { processTree, treeCpuSeconds } from "./_proc.ts";
import { reexecOnLab } from "./_lab_fixture.ts";

// One lab for everything (the test helpers read TP_LAB_ID when first imported): a lab of its own unless --lab-id or
// TP_LAB_ID names one.
await reexecOnLab("pf" + (Deno.pid % 36 ** 4).toString(36));
if (Deno.uid() !== 0) throw new Error("bench_portforward needs root (it brings up a lab of network namespaces)");
const fx = await import("../tests/connect_fixture.ts");
const { down } = await import("./lab.ts");
const { startDouble } = await import("../tests/k8s_lab_double.ts");
const echo = LAB.services.find((s) => s.name === "echo")!;

async function iperf3(reverse: boolean): Promise<number> {
  const r = await fx.iperf3({ seconds: 3, reverse, prefix: PIN ? ["taskset", "-c", TP_CPU] : [] });
  if (r.code !== 0) throw new Error(`iperf3: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e9;
}

async function rr(): Promise<{ p50: number; p99: number }> {
  const r = await fx.inNs("ws", [
    ...(PIN ? ["taskset", "-c", TP_CPU] : []),
    Deno.execPath(),
    "run",
    "--allow-net",
    `${ROOT}/scripts/bench_client.ts`,
    "rr",
    echo.serviceIp,
    String(echo.ports["tcp-echo"]!.port),
  ], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`rr client: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { p50Us: number; p99Us: number };
  return { p50: j.p50Us, p99: j.p99Us };
}

interface Row {
  up: number;
  down: number;
  p50: number;
  p99: number;
  /** CPU seconds per GB moved (upload and download runs together), of the daemon, the manager and the double. */
  cpuPerGB: { daemon: number; manager: number; double: number };
}

/**
 * With --pin (the default on a machine of 2 or more CPUs): the API server double runs on the last CPU and
 * everything else (daemon, manager, iperf3 both ends, the echo service) on CPU 0, as if the API server had a machine
 * of its own, which a real one has. Both modes run so, so their ratio is the port-forward's cost to tp.
 */
const PIN = navigator.hardwareConcurrency >= 2 && !Deno.args.includes("--no-pin");
const TP_CPU = "0";
const DOUBLE_CPU = String(navigator.hardwareConcurrency - 1);
async function pin(root: number, cpu: string): Promise<void> {
  if (!PIN) return;
  for (const pid of processTree(root)) {
    await new Deno.Command("taskset", { args: ["-a", "-p", "-c", cpu, String(pid)], stdout: "null", stderr: "null" })
      .output();
  }
}

const results: Record<string, Row> = {};
const samples: Record<string, Row[]> = {};
const busyness: { mode: string; upload: Record<string, number>; download: Record<string, number> }[] = [];
const roundsArg = Deno.args.indexOf("--rounds");
const ROUNDS = roundsArg >= 0 ? Number(Deno.args[roundsArg + 1]) : 3;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 20) throw new RangeError("--rounds takes 1..20");
const manager = await fx.startLabManager();
let apiServer: Awaited<ReturnType<typeof startDouble>> | undefined;
try {
  const double = apiServer = await startDouble();
  await pin(double.pid, DOUBLE_CPU);
  await pin(manager.pid, TP_CPU);
  for (const f of ["iperf.pid", "services.pid"]) {
    const pid = Number(await Deno.readTextFile(`${LAB.stateDir}/${f}`).catch(() => "0"));
    if (pid > 0) await pin(pid, TP_CPU);
  }
  const modes: [string, string[]][] = [
    ["--manager-url (direct h2c)", ["--manager-url", fx.MANAGER_URL]],
    ["port-forward (API server)", ["--kubeconfig", double.kubeconfig]],
  ];
  // Rounds alternate the modes, so drift on the machine (it is shared and noisy) falls on both; medians are shown.
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, flags] of modes) {
      const c = await fx.tp(["connect", ...flags]);
      if (c.code !== 0) throw new Error(`tp connect ${flags.join(" ")}: ${c.stderr}`);
      try {
        const daemon = (await fx.daemonPid())!;
        await pin(daemon, TP_CPU);
        const cpu = () => ({
          daemon: treeCpuSeconds(daemon),
          manager: treeCpuSeconds(manager.pid),
          double: treeCpuSeconds(double.pid),
        });
        const before = cpu();
        const up = await iperf3(false);
        const middle = cpu();
        const downGbps = await iperf3(true);
        const after = cpu();
        // How busy each process was during each run (1.0 = one CPU all the time): who limits which direction.
        const busy = (a: typeof before, b: typeof before) =>
          Object.fromEntries(Object.entries(b).map(([k, v]) => [k, +((v - a[k as keyof typeof a]) / 3).toFixed(2)]));
        busyness.push({ mode: name, upload: busy(before, middle), download: busy(middle, after) });
        const gb = (up + downGbps) * 3 / 8; // two 3-second runs
        const per = (k: "daemon" | "manager" | "double") => (after[k] - before[k]) / gb;
        (samples[name] ??= []).push({
          up,
          down: downGbps,
          cpuPerGB: { daemon: per("daemon"), manager: per("manager"), double: per("double") },
          ...(await rr()),
        });
      } finally {
        await fx.tp(["quit"]);
      }
    }
  }
  for (const [name, rows] of Object.entries(samples)) {
    const med = (f: (r: Row) => number) => {
      const v = rows.map(f).sort((a, b) => a - b);
      return v.length % 2 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
    };
    results[name] = {
      up: med((r) => r.up),
      down: med((r) => r.down),
      p50: med((r) => r.p50),
      p99: med((r) => r.p99),
      cpuPerGB: {
        daemon: med((r) => r.cpuPerGB.daemon),
        manager: med((r) => r.cpuPerGB.manager),
        double: med((r) => r.cpuPerGB.double),
      },
    };
  }
} finally {
  await fx.forceQuit();
  await apiServer?.stop();
  await manager.stop();
  await down(LAB);
}

const [direct, pf] = Object.values(results) as [Row, Row];
if (Deno.args.includes("-o") && Deno.args.includes("json")) {
  console.log(JSON.stringify({ results, ratios: { up: pf.up / direct.up, down: pf.down / direct.down } }, null, 2));
} else {
  const f = (x: number, d = 2) => x.toFixed(d).padStart(10);
  console.log(
    PIN
      ? `CPU ${DOUBLE_CPU}: the API server double; CPU ${TP_CPU}: tp, iperf3 and the services (--no-pin to share all)`
      : "every process shares every CPU",
  );
  console.log(
    `${"path".padEnd(28)}${"up Gbit/s".padStart(10)}${"down".padStart(10)}${"p50 us".padStart(10)}${
      "p99 us".padStart(10)
    }`,
  );
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name.padEnd(28)}${f(r.up)}${f(r.down)}${f(r.p50, 0)}${f(r.p99, 0)}`);
  }
  console.log(
    `${"port-forward / direct".padEnd(28)}${f(pf.up / direct.up)}${f(pf.down / direct.down)}${f(pf.p50 / direct.p50)}${
      f(pf.p99 / direct.p99)
    }`,
  );
  console.log(
    `throughput cost of the port-forward: up ${((1 - pf.up / direct.up) * 100).toFixed(0)} %, down ${
      ((1 - pf.down / direct.down) * 100).toFixed(0)
    } % (target: at most 20 %)`,
  );
  console.log(`\nCPU seconds per GB moved   ${"daemon".padStart(10)}${"manager".padStart(10)}${"double".padStart(10)}`);
  for (const [name, r] of Object.entries(results)) {
    const c = r.cpuPerGB;
    console.log(`${name.padEnd(27)}${f(c.daemon)}${f(c.manager)}${f(c.double)}`);
  }
  console.log("\nCPUs busy during each run (1.00 = one CPU all the time):");
  for (const b of busyness) {
    console.log(`  ${b.mode.padEnd(27)} up ${JSON.stringify(b.upload)} down ${JSON.stringify(b.download)}`);
  }
  console.log(
    `the port-forward's own cost in tp's daemon: ${
      ((pf.cpuPerGB.daemon / direct.cpuPerGB.daemon - 1) * 100).toFixed(0)
    } % ` +
      `more CPU per byte. The double (an API server's stand-in, ${
        PIN ? `pinned to CPU ${DOUBLE_CPU}` : "here on the same CPUs as tp"
      }) used ` +
      `${pf.cpuPerGB.double.toFixed(2)} s per GB that a real API server spends on its own machine.`,
  );
}
