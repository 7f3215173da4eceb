/**
 * scripts/bench.ts's three paths from the lab's workstation namespace to its cluster namespace, each set up, measured
 * (scripts/_bench_suite.ts) and taken down again, even when a measure fails:
 * - kernel: a plain route to the cluster's subnets via the veth;
 * - sshuttle: sshd in the cluster namespace (a throwaway host key and client key in a temp dir), sshuttle in the
 *   workstation namespace for the cluster's subnets;
 * - tp: `tp manager` in the cluster namespace, `tp connect --manager-url` in the workstation namespace.
 */
import { controlRequest } from "../cli/daemon/control.ts";
import {
  CAPACITY_CONNECTIONS,
  cfg,
  CL,
  DENO,
  inWs,
  log,
  profile,
  ROOT,
  run,
  STATE_DIR,
  TP,
  V4_SUBNETS,
  wanted,
  WS,
} from "./_bench_run.ts";
import { type Background, background, finish } from "./_bench_background.ts";
import {
  checkReachable,
  firstRequestProber,
  idleMemory,
  measureIdleCpu,
  type PathResult,
  steadyIdleMemory,
} from "./_bench_measures.ts";
import { cpuObserver, suite } from "./_bench_suite.ts";
import { DAEMON_INSPECT, MANAGER_INSPECT, profileDuring } from "./_bench_profiles.ts";
import { which } from "./_bench_prerequisites.ts";
import { must, round, type Teardown } from "./_lab_fixture.ts";
import { processTree, rssKiB } from "./_proc.ts";

/** The kernel's own route to the same services: the physical limit (the route is removed after). */
export async function kernelPath(ending: Teardown): Promise<PathResult> {
  const res: PathResult = { measures: {}, details: {}, errors: [] };
  const added: string[] = [];
  try {
    for (const c of V4_SUBNETS) {
      await must(`ip route add ${c}`, inWs(["ip", "route", "add", c, "via", cfg.veth.clusterIp]));
      added.push(c);
    }
    await checkReachable("kernel route");
    await suite("kernel", res, null, { ending, udp: true, dns: cfg.clusterDns.ip });
    if (wanted("capacity")) {
      const cap = await idleMemory(() => [], res.errors, CAPACITY_CONNECTIONS);
      res.measures.connectionsHeld = cap.detail.opened as number;
    }
  } catch (e) {
    res.errors.push((e as Error).message);
  } finally {
    for (const c of added) await inWs(["ip", "route", "del", c, "via", cfg.veth.clusterIp]);
  }
  return res;
}

/**
 * sshuttle over ssh to an sshd in the cluster namespace; its NAT rules live in the workstation namespace's own
 * nftables/iptables. It carries TCP only: no UDP and no DNS measured.
 */
export async function sshuttlePath(ending: Teardown): Promise<PathResult> {
  const res: PathResult = { measures: {}, details: {}, errors: [] };
  const dir = await Deno.makeTempDir({ prefix: "tp-bench-ssh-" });
  const added: string[] = [];
  let sshd: Background | null = null;
  let sshuttle: Background | null = null;
  try {
    for (const k of ["host_key", "client_key"]) {
      await must("ssh-keygen", run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/${k}`]));
    }
    await Deno.copyFile(`${dir}/client_key.pub`, `${dir}/authorized_keys`);
    const port = 2222;
    await Deno.writeTextFile(
      `${dir}/sshd_config`,
      [
        `ListenAddress ${cfg.veth.clusterIp}:${port}`,
        `HostKey ${dir}/host_key`,
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no", // the temp dir is not root's ~/.ssh
        `PidFile ${dir}/sshd.pid`,
      ].join("\n") + "\n",
    );
    await Deno.mkdir("/run/sshd", { recursive: true }); // sshd's privilege separation directory
    const sshdBin = which("sshd")!;
    sshd = background("sshd", ["ip", "netns", "exec", CL, sshdBin, "-D", "-e", "-f", `${dir}/sshd_config`]);
    for (let i = 0; i < 100; i++) {
      const r = await run(["ip", "netns", "exec", CL, "ss", "-Htln", `sport = :${port}`]);
      if (r.stdout.trim()) break;
      if (i === 99) throw new Error(`sshd did not listen on ${cfg.veth.clusterIp}:${port}: ${sshd.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // A route for connect() to find (as a laptop's default route would be): to the lab's silent next hop, so a
    // packet that sshuttle's NAT rule does not catch goes nowhere, and nothing is measured by mistake.
    for (const c of V4_SUBNETS) {
      await must(`ip route add ${c}`, inWs(["ip", "route", "add", c, "via", cfg.veth.silentNextHop]));
      added.push(c);
    }
    const ssh = `ssh -i ${dir}/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ` +
      `-o LogLevel=ERROR -o BatchMode=yes`;
    const prober = await firstRequestProber();
    await prober.go();
    sshuttle = background("sshuttle", [
      "ip",
      "netns",
      "exec",
      WS,
      "sshuttle",
      "-r",
      `root@${cfg.veth.clusterIp}:${port}`,
      "-e",
      ssh,
      ...V4_SUBNETS,
    ]);
    try {
      res.measures.firstRequestMs = await prober.result();
    } catch (e) {
      throw new Error(`sshuttle: ${(e as Error).message}; sshuttle said: ${sshuttle.stderr.trim()}`);
    }
    const method = (await inWs(["nft", "list", "ruleset"])).stdout.includes("sshuttle") ? "nft" : "iptables?";
    res.details.firewall = method;
    await checkReachable("sshuttle");
    const shPid = sshuttle.pid;
    await measureIdleCpu(res, { sshuttle: () => processTree(shPid) });
    try {
      if (wanted("memory")) {
        const mem = await steadyIdleMemory(() => processTree(shPid), res.errors);
        res.measures.idleKiBPerConn = mem.perConn;
        res.details.idleMemory = { ...mem.detail, what: "sshuttle's client processes (sshuttle, its firewall, ssh)" };
      }
    } catch (e) {
      res.errors.push(`idleMemory: ${(e as Error).message}`);
    }
    const observer = cpuObserver({ sshuttle: () => processTree(shPid) }, null);
    await suite("sshuttle", res, observer, { ending, udp: false, dns: null });
    res.errors.push(
      "udp: not measured; sshuttle's nat/nft methods carry TCP only (UDP needs --method tproxy with policy routing)",
    );
  } catch (e) {
    res.errors.push((e as Error).message);
  } finally {
    for (const b of [sshuttle, sshd]) {
      if (b) await finish(b);
    }
    for (const c of added) await inWs(["ip", "route", "del", c, "via", cfg.veth.silentNextHop]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return res;
}

/** A step left out by `--only`. */
class Skipped extends Error {}

/** tp: its manager in the cluster namespace, its daemon (`tp connect`) in the workstation namespace. */
export async function tpPath(ending: Teardown): Promise<PathResult> {
  const res: PathResult = { measures: {}, details: {}, errors: [] };
  const env = { ...Deno.env.toObject(), TP_STATE_DIR: STATE_DIR, NO_COLOR: "1" };
  let manager: Background | null = null;
  let foreground: Background | null = null;
  let daemon: number | null = null;
  try {
    await must("tp version (warming Deno's module cache)", run([TP, "version"], { timeoutMs: 60_000 }));
    const args = ["--listen", `${cfg.manager.ip}:${cfg.manager.port}`];
    for (const c of cfg.subnets.pod) args.push("--pod-cidr", c);
    for (const c of cfg.subnets.service) args.push("--service-cidr", c);
    args.push("--dns-server", `${cfg.clusterDns.ip}:${cfg.clusterDns.port}`);
    const main = `${ROOT}/cli/main.ts`;
    manager = background(
      "tp manager",
      profile
        ? [
          "ip",
          "netns",
          "exec",
          CL,
          DENO,
          "run",
          "-A",
          "--quiet",
          `--inspect=${MANAGER_INSPECT}`,
          main,
          "manager",
          ...args,
        ]
        : ["ip", "netns", "exec", CL, TP, "manager", ...args],
    );
    const managerUrl = `http://${cfg.manager.ip}:${cfg.manager.port}`;
    for (let i = 0; i < 100; i++) {
      const r = await inWs(["curl", "-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}", `${managerUrl}/metrics`]);
      if (r.stdout === "200") break;
      if (i === 99) throw new Error(`tp manager did not serve ${managerUrl}: ${manager.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const prober = await firstRequestProber();
    await prober.go();
    if (profile) {
      // The daemon in the foreground under the inspector: the start-up figure then includes the inspector's cost.
      foreground = background("tp daemon (inspected)", [
        "ip",
        "netns",
        "exec",
        WS,
        DENO,
        "run",
        "-A",
        "--quiet",
        `--inspect=${DAEMON_INSPECT}`,
        main,
        "connect",
        "--foreground",
        "--manager-url",
        managerUrl,
      ], { env });
      res.measures.firstRequestMs = await prober.result();
      res.details.connect = { note: "--profile: the daemon ran in the foreground under --inspect" };
    } else {
      const c = await inWs([TP, "connect", "--manager-url", managerUrl], { timeoutMs: 30_000, env });
      if (c.code !== 0) throw new Error(`tp connect failed (exit ${c.code}): ${c.stderr.trim()}`);
      res.measures.firstRequestMs = await prober.result();
      const said = c.stderr.match(/connected in (\d+) ms/)?.[1];
      res.details.connect = { commandMs: round(c.ms, 0), daemonSays: said === undefined ? null : Number(said) };
    }
    for (let i = 0; i < 100 && !(await Deno.stat(`${STATE_DIR}/daemon.json`).catch(() => null)); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    daemon = JSON.parse(await Deno.readTextFile(`${STATE_DIR}/daemon.json`)).pid as number;
    res.details.daemonPid = daemon;
    await checkReachable("tp");
    const d = daemon;
    const m = manager.pid;
    await measureIdleCpu(res, { daemon: () => [d], manager: () => [m] });
    // Memory first, while the daemon's heap is young: after the throughput runs, garbage collection moves its RSS
    // by more than the held connections do.
    try {
      if (!wanted("memory")) throw new Skipped();
      const managerBefore = rssKiB(m);
      const mem = await steadyIdleMemory(() => [d], res.errors);
      res.measures.idleKiBPerConn = mem.perConn;
      res.details.idleMemory = {
        ...mem.detail,
        what: "the daemon's RSS",
        managerRssKiB: { before: managerBefore, after: rssKiB(m) },
      };
    } catch (e) {
      if (!(e instanceof Skipped)) res.errors.push(`idleMemory: ${(e as Error).message}`);
    }
    const status = () => controlRequest(`${STATE_DIR}/daemon.sock`, { op: "status" });
    const observer = cpuObserver({ daemon: () => [d], manager: () => [m] }, status);
    const dnsAddress = ((await status()) as { dns?: { address?: string } }).dns?.address ?? null;
    await suite("tp", res, observer, {
      ending,
      udp: true,
      dns: dnsAddress,
      wrap: (key, f) =>
        profile && ["tcpUp1Gbps", "tcpDown1Gbps", "httpConnPerSec", "rr"].includes(key)
          ? profileDuring(key, res, f)
          : f(),
    });
    // The capacity probe last: opening more connections than the session can carry can end the session.
    try {
      if (!wanted("capacity")) throw new Skipped();
      const cap = await idleMemory(() => [d], res.errors, CAPACITY_CONNECTIONS);
      res.details.capacity = { attempted: CAPACITY_CONNECTIONS, ...cap.detail };
      res.measures.connectionsHeld = cap.detail.opened as number;
    } catch (e) {
      if (!(e instanceof Skipped)) res.errors.push(`capacity: ${(e as Error).message}`);
    }
    res.details.finalStatus = await status();
  } catch (e) {
    res.errors.push((e as Error).message);
  } finally {
    const q = await inWs([TP, "quit"], { timeoutMs: 15_000, env });
    if (q.code !== 0) log(`tp quit: ${q.stderr.trim()}`);
    if (foreground) await finish(foreground);
    if (daemon !== null) {
      try {
        Deno.kill(daemon, "SIGKILL");
      } catch { /* ended by tp quit */ }
    }
    await Deno.copyFile(`${STATE_DIR}/daemon.log`, `${ROOT}/.bench/daemon.log`).catch(() => {});
    if (manager) {
      await finish(manager);
      await Deno.writeTextFile(`${ROOT}/.bench/manager.log`, manager.stderr);
    }
    await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
  }
  return res;
}
