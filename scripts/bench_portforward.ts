/**
 * Benchmark (issue 8): tp connected through the Kubernetes API server's port-forward (the API server test double,
 * in the lab's cluster namespace as an API server would be) against tp connected with --manager-url, in the same
 * run, on a lab of its own: single-stream TCP upload and download (iperf3) and TCP request/response latency (64 B on
 * one connection). The port-forward layer should cost at most 20 % of throughput.
 *
 *   ./scripts/deno run -A scripts/bench_portforward.ts [-o json]
 *
 * Needs root, the lab's tools, iperf3 and openssl (the double's certificates).
 */
import { LAB, ROOT } from "../tests/lab.ts";

// One lab for everything (the test helpers read TP_LAB_ID when first imported): a lab of its own unless named.
if (!Deno.env.get("TP_LAB_ID")) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, ...Deno.args],
    env: { TP_LAB_ID: "pf" + (Deno.pid % 36 ** 4).toString(36) },
  }).spawn();
  Deno.exit((await child.status).code);
}
if (Deno.uid() !== 0) throw new Error("bench_portforward needs root (it brings up a lab of network namespaces)");
const fx = await import("../tests/connect_fixture.ts");
const { down } = await import("./lab.ts");
const echo = LAB.services.find((s) => s.name === "echo")!;
const iperf = LAB.services.find((s) => s.name === "iperf")!;

async function iperf3(reverse: boolean): Promise<number> {
  const r = await fx.inNs("ws", [
    "iperf3",
    "-c",
    iperf.serviceIp,
    "-p",
    String(iperf.ports["iperf"]!.port),
    "-t",
    "3",
    "-J",
    ...(reverse ? ["-R"] : []),
  ], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`iperf3: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e9;
}

async function rr(): Promise<{ p50: number; p99: number }> {
  const r = await fx.inNs("ws", [
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
}

const results: Record<string, Row> = {};
const manager = await fx.startLabManager();
const dir = await Deno.makeTempDir({ prefix: "tp-bench-pf-" });
const double = fx.spawnInCluster([
  Deno.execPath(),
  "run",
  "-A",
  `${ROOT}/tests/k8s_double_process.ts`,
  "--listen",
  `${LAB.manager.ip}:6443`,
  "--forward",
  `${LAB.manager.ip}:${LAB.manager.port}`,
  "--dir",
  dir,
]);
try {
  for (let i = 0; i < 150 && !(await Deno.stat(`${dir}/ready`).then(() => true, () => false)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const modes: [string, string[]][] = [
    ["--manager-url (direct h2c)", ["--manager-url", fx.MANAGER_URL]],
    ["port-forward (API server)", ["--kubeconfig", `${dir}/kubeconfig`]],
  ];
  for (const [name, flags] of modes) {
    const c = await fx.tp(["connect", ...flags]);
    if (c.code !== 0) throw new Error(`tp connect ${flags.join(" ")}: ${c.stderr}`);
    try {
      const up = await iperf3(false);
      const downGbps = await iperf3(true);
      results[name] = { up, down: downGbps, ...(await rr()) };
    } finally {
      await fx.tp(["quit"]);
    }
  }
} finally {
  await fx.forceQuit();
  await double.stop();
  await manager.stop();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await down(LAB);
}

const [direct, pf] = Object.values(results) as [Row, Row];
if (Deno.args.includes("-o") && Deno.args.includes("json")) {
  console.log(JSON.stringify({ results, ratios: { up: pf.up / direct.up, down: pf.down / direct.down } }, null, 2));
} else {
  const f = (x: number, d = 2) => x.toFixed(d).padStart(10);
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
}
