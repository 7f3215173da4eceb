/**
 * The end-to-end setup of `tp connect` tests: the lab, `tp manager` running in its cluster namespace (a real
 * process), and `tp` commands run in its workstation namespace with a state directory of the test's own.
 * Every process started here is ended here, by pid.
 */
import { ensureLab, exec, type ExecOptions, type ExecResult, inNs, LAB, labService, ROOT } from "./lab.ts";

export const TP = `${ROOT}/scripts/tp`;
export const MANAGER_URL = `http://${LAB.manager.ip}:${LAB.manager.port}`;
export const STATE_DIR = `/run/tp-test-${LAB.id}`;

export interface LabManager {
  pid: number;
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts `tp manager` in the cluster namespace and waits until it serves: for the lab's subnets, or, with
 * `kubeconfig`, learning them from that cluster's API.
 */
export async function startLabManager(extra: string[] = [], opts: { kubeconfig?: string } = {}): Promise<LabManager> {
  await ensureLab();
  const args = ["--listen", `${LAB.manager.ip}:${LAB.manager.port}`];
  if (opts.kubeconfig) args.push("--kubeconfig", opts.kubeconfig);
  else {
    for (const c of LAB.subnets.pod) args.push("--pod-cidr", c);
    for (const c of LAB.subnets.service) args.push("--service-cidr", c);
  }
  args.push("--dns-server", `${LAB.clusterDns.ip}:${LAB.clusterDns.port}`, ...extra);
  const child = spawnInCluster([TP, "manager", ...args]);
  const stop = () => child.stop();
  const log = () => child.log();
  for (let i = 0; i < 100; i++) {
    const r = await inNs("ws", [
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-m",
      "1",
      "-w",
      "%{http_code}",
      `${MANAGER_URL}/metrics`,
    ], {
      timeoutMs: 3000,
    });
    if (r.stdout === "200") return { pid: child.pid, url: MANAGER_URL, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`tp manager did not serve ${MANAGER_URL} within 10 s:\n${log()}`);
}

/**
 * Runs `fn` while `tp manager` (with `managerArgs`) runs on the lab and `tp connect --manager-url` (with
 * `connectArgs`) is connected to it; ends the daemon and the manager after, whatever happened.
 */
export async function whileConnected(
  fn: () => Promise<void>,
  opts: { managerArgs?: string[]; connectArgs?: string[] } = {},
): Promise<void> {
  const manager = await startLabManager(opts.managerArgs);
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL, ...(opts.connectArgs ?? [])]);
    if (c.code !== 0) throw new Error(`tp connect failed (exit ${c.code}):\n${c.stderr}`);
    await fn();
  } finally {
    await forceQuit();
    await manager.stop();
  }
}

export interface ClusterProcess {
  pid: number;
  /** The last 50 kB of its stderr. */
  log(): string;
  /** Whether it has exited. */
  exited(): boolean;
  /** SIGTERM, then SIGKILL after 3 s (or as spawned); resolves once it has exited. */
  stop(): Promise<void>;
}

/** Starts a long-running process in the lab's cluster namespace, its stderr kept for error messages. */
export function spawnInCluster(argv: string[]): ClusterProcess {
  return spawnInNs(LAB.namespaces.cluster, argv);
}

export interface SpawnOptions {
  /** Environment variables added to the process's. */
  env?: Record<string, string>;
  /**
   * Enter only the namespace's network (`nsenter --net`), staying in the host's mount namespace, so that network
   * namespaces the process makes are visible to the caller; by default `ip netns exec`, which also remounts /sys and
   * binds the namespace's /etc/netns files.
   */
  netOnly?: boolean;
  /** How long `stop()` waits after SIGTERM before SIGKILL (default 3 s). */
  killAfterMs?: number;
}

/**
 * Starts a long-running process in a network namespace, its stderr kept for error messages; `stop()` ends it by its
 * pid: SIGTERM, then SIGKILL after `killAfterMs`.
 */
export function spawnInNs(ns: string, argv: string[], opts: SpawnOptions = {}): ClusterProcess {
  const enter = opts.netOnly ? ["nsenter", `--net=/run/netns/${ns}`] : ["ip", "netns", "exec", ns];
  return spawnLogged([...enter, ...argv], opts);
}

/**
 * Starts a long-running process (with extra environment variables), its stderr kept for error messages; `stop()` ends
 * it by its pid: SIGTERM, then SIGKILL after `killAfterMs`.
 */
export function spawnLogged(argv: string[], opts: Omit<SpawnOptions, "netOnly"> = {}): ClusterProcess {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd!, {
    args,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  let exited = false;
  child.status.then(() => (exited = true));
  const drain = (async () => {
    for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) log = (log + s).slice(-50_000);
  })();
  return {
    pid: child.pid,
    log: () => log,
    exited: () => exited,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, opts.killAfterMs ?? 3000);
      await child.status;
      clearTimeout(t);
      await drain;
    },
  };
}

/** The workstation's local stand-in of an intercepted app: the lab's echo services, calling themselves "laptop". */
export function startLocalApp(httpPort: number, tcpPort: number): ClusterProcess {
  return spawnInNs(LAB.namespaces.workstation, [
    Deno.execPath(),
    "run",
    "-A",
    `${ROOT}/scripts/lab_services.ts`,
    `--http-port=${httpPort}`,
    `--tcp-port=${tcpPort}`,
    `--udp-port=${tcpPort}`,
    "--udp-addresses=127.0.0.1",
    "--name=laptop",
  ]);
}

/** Runs `tp ARGS` in the workstation namespace with the test's state directory. */
export function tp(args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return inNs("ws", [TP, ...args], {
    timeoutMs: 60_000,
    ...opts,
    env: { ...Deno.env.toObject(), TP_STATE_DIR: STATE_DIR, NO_COLOR: "1", ...(opts.env ?? {}) },
  });
}

/** The daemon's pid from its state file, if any. */
export async function daemonPid(): Promise<number | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${STATE_DIR}/daemon.json`)).pid;
  } catch {
    return null;
  }
}

/** Ends whatever daemon a test left running, and its state. */
export async function forceQuit(): Promise<void> {
  const pid = await daemonPid();
  await tp(["quit"], { timeoutMs: 15_000 });
  if (pid !== null) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
}

/** Sets the workstation's end of the lab's link down or up. */
export async function setWorkstationLink(state: "down" | "up"): Promise<void> {
  const r = await inNs("ws", ["ip", "link", "set", LAB.links.workstation, state]);
  if (r.code !== 0) throw new Error(`ip link set ${LAB.links.workstation} ${state} failed: ${r.stderr.trim()}`);
}

/**
 * Cuts the lab's link: the workstation's end down until tp says it is reconnecting (asked every 50 ms, for at most
 * 10 s), `ms` more, then up (also when this fails). Returns how long tp took to notice (-1: it did not) and when the
 * link came back (Date.now), for the time to the first byte after it.
 */
export async function cutLink(
  ms: number,
  during?: () => Promise<void>,
): Promise<{ noticedMs: number; upAt: number }> {
  const downAt = performance.now();
  await setWorkstationLink("down");
  let noticedMs = -1;
  try {
    for (let i = 0; i < 200 && noticedMs < 0; i++) {
      const st = JSON.parse((await tp(["status", "-o", "json"])).stdout || "{}");
      if (st.manager?.state === "reconnecting") noticedMs = performance.now() - downAt;
      else await new Promise((r) => setTimeout(r, 50));
    }
    if (noticedMs >= 0) {
      const t0 = performance.now();
      await during?.(); // inside the cut; its time counts towards `ms`
      await new Promise((r) => setTimeout(r, Math.max(0, ms - (performance.now() - t0))));
    }
  } finally {
    await setWorkstationLink("up");
  }
  return { noticedMs, upAt: Date.now() };
}

/**
 * The resume tests' TCP echo client (tests/resume_client.ts) in the workstation namespace: `mb` MB to the lab's echo
 * service at `rateMbPerS`, its JSON line on stdout.
 */
export function resumeEcho(mb: number, rateMbPerS: number, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
  const echo = labService(LAB, "echo");
  return inNs("ws", [
    Deno.execPath(),
    "run",
    "-A",
    "--cached-only",
    `${ROOT}/tests/resume_client.ts`,
    echo.serviceIp,
    String(echo.ports["tcp-echo"]!.port),
    String(mb),
    String(rateMbPerS),
  ], { timeoutMs: opts.timeoutMs ?? 120_000 });
}

/**
 * `mb` MB of random bytes through the lab's TCP echo service with socat from the workstation namespace, the sending
 * side half-closed at its end: stdout holds the SHA-256 of what was sent, then of what came back, one a line.
 */
export function socatEcho(mb: number): Promise<ExecResult> {
  const echo = labService(LAB, "echo");
  const f = `/tmp/tp-${mb}m.$$`;
  return inNs("ws", [
    "sh",
    "-c",
    `head -c ${mb * 1_000_000} /dev/urandom > ${f}; a=$(sha256sum < ${f}); ` +
    `b=$(socat -b 65536 -t 30 - TCP:${echo.serviceIp}:${echo.ports["tcp-echo"]!.port} < ${f} | sha256sum); ` +
    `rm -f ${f}; echo "$a"; echo "$b"`,
  ], { timeoutMs: 120_000 });
}

/**
 * iperf3 from the workstation namespace to the lab's iperf service for `seconds` (`reverse`: the service sends), its
 * JSON report on stdout; `prefix` goes before the command (e.g. taskset).
 */
export function iperf3(
  opts: { seconds: number; reverse?: boolean; prefix?: string[]; timeoutMs?: number },
): Promise<ExecResult> {
  const iperf = labService(LAB, "iperf");
  return inNs("ws", [
    ...(opts.prefix ?? []),
    "iperf3",
    "-c",
    iperf.serviceIp,
    "-p",
    String(iperf.ports["iperf"]!.port),
    "-t",
    String(opts.seconds),
    "-J",
    ...(opts.reverse ? ["-R"] : []),
  ], { timeoutMs: opts.timeoutMs ?? 30_000 });
}

/**
 * Opens `count` TCP connections to the lab's echo service from the workstation namespace and holds them
 * (scripts/bench_client.ts hold): its first stdout line says how many opened.
 */
export function holdConnections(count: number): Promise<ExecResult> {
  const echo = labService(LAB, "echo");
  return inNs("ws", [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-read",
    `${ROOT}/scripts/bench_client.ts`,
    "hold",
    echo.serviceIp,
    String(echo.ports["tcp-echo"]!.port),
    "--count",
    String(count),
  ], { stdin: "", timeoutMs: 120_000 });
}

/** Links in the workstation namespace whose names start with "tp" (tp's devices), e.g. ["tp0"]. */
export async function tpLinks(): Promise<string[]> {
  const r = await inNs("ws", ["ip", "-j", "link"]);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).filter((n) => /^tp\d+$/.test(n));
}

/** Routes in the workstation namespace that go to tp's device. */
export async function tpRoutes(): Promise<string[]> {
  const out: string[] = [];
  for (const fam of ["-4", "-6"]) {
    const r = await inNs("ws", ["ip", "-j", fam, "route", "show", "table", "all"]);
    for (const rt of JSON.parse(r.stdout || "[]") as { dst: string; dev?: string }[]) {
      if (rt.dev && /^tp\d+$/.test(rt.dev)) out.push(`${rt.dst} dev ${rt.dev}`);
    }
  }
  return out;
}

export { exec, inNs, LAB };
