/**
 * `scripts/deno run -A scripts/bench_volumes_lab.ts [--lab-id tpv] [--runs 3]`: a pod's volumes on the workstation
 * through the lab's tunnel, tp's mount beside what a user would otherwise do, in one run, on a lab of its own
 * (`tpv-ws` / `tpv-cluster`, a pod `tpv-pod-web`, tp's state in /run/tp-test-tpv); printed as a table of ratios and
 * written to `.bench/volumes-<time>.json`.
 *
 * - tp: `tp intercept web --mount DIR`: sshfs -o slave on the workstation, its SFTP carried as one stream of tp's
 *   HTTP/2 connection to the manager, which relays it to the agent's sftp-server in the pod (no encryption of its
 *   own: the connection is the API server's TLS, here the lab's plain link).
 * - ssh: sshfs over ssh to an sshd in the pod's namespace (OpenSSH, its default cipher; a throwaway host key and
 *   authorized key in a temporary directory, ended by this script), reached at the pod's IP through `tp connect`,
 *   the only way from the workstation to a pod (TUN -> tp's stack -> the same HTTP/2 connection -> the manager dials
 *   the pod). The same sftp-server serves both.
 *
 * Cases, each on a fresh mount (cold caches on the workstation), the median of --runs: 100 MB sequential read (`cat`
 * to /dev/null), 100 MB sequential write (`cat` of a local file into the mount; the time includes close, when sshfs
 * has every write answered), and `ls -lR` then `cat` of every file of a tree of 5,000 small files. The pod's files
 * and the local file sit in the page cache, so the disk is out of the figures. Every workstation command runs in one
 * mount namespace, the daemon's (tests/ws_shell.ts). The CPU seconds of each process in each case are recorded.
 *
 * Target (the issue): tp's mount at least as fast as sshfs over ssh on each case, faster on the 100 MB read and write.
 *
 * Needs root, iproute2, dnsmasq-base, iperf3 (the lab), sshfs, fuse3, openssh-sftp-server, openssh-server,
 * openssh-client (`scripts/install_deps --bench`). Every process it starts is ended by pid; the pod and the lab go
 * down, even on failure. Bounded: a few minutes.
 */
import type { WorkstationShell } from "../tests/ws_shell.ts";
import {
  APP_HTTP as HTTP,
  argValue,
  must,
  POD,
  POD_IP,
  printTargets,
  round,
  runBench,
  selectLab,
  startAgentPod,
  type Teardown,
  writeReport,
} from "./_lab_fixture.ts";
import { cpuSeconds, processTree } from "./_proc.ts";
import {
  makePodFiles,
  MB,
  randomFile,
  SIZE,
  type Sshd,
  startSshd,
  TREE_DIRS,
  TREE_FILES_PER_DIR,
} from "./_volumes_bench.ts";

selectLab("tpv"); // before the lab's helpers are imported: they read TP_LAB_ID
const { exec, LAB, requireRoot, requireTools } = await import("../tests/lab.ts");
const { daemonPid, forceQuit, MANAGER_URL, STATE_DIR } = await import("../tests/connect_fixture.ts");
const { startWorkstationShell } = await import("../tests/ws_shell.ts");

const RUNS = Number(argValue("runs") ?? 5);
const LOCAL_PORT = 18080; // the intercept's local port: nothing needs to listen, only the mount is measured
const SSHD_PORT = 2222;

const log = (s: string) => console.error(`bench_volumes_lab: ${s}`);

// ---------------------------------------------------------------- mounts

/** Processes to watch, by name: each resolved to pids when a case starts (they are counted alone, not as trees). */
type Procs = Record<string, () => number[]>;

/** `root`'s descendants (and itself) named `comm`. */
function named(root: number, comm: string): number[] {
  return processTree(root).filter((p) => {
    try {
      return Deno.readTextFileSync(`/proc/${p}/comm`).trim() === comm;
    } catch {
      return false;
    }
  });
}

/** The ssh clients in the workstation's namespace connected to the pod's sshd. */
function sshClients(sh: WorkstationShell): number[] {
  return named(1, "ssh").filter((p) => {
    try {
      return sh.holds(p) && Deno.readTextFileSync(`/proc/${p}/cmdline`).includes(POD_IP);
    } catch {
      return false;
    }
  });
}

interface Mounted {
  dir: string;
  /** The processes serving this mount on the workstation, by name, for the CPU figures. */
  pids(): Procs;
  close(): Promise<void>;
}

let mountCount = 0;

async function tpMount(sh: WorkstationShell, base: string, daemon: () => number): Promise<Mounted> {
  const dir = `${base}/tp-mnt-${++mountCount}`;
  await must("tp intercept --mount", sh.tp(["intercept", POD, "--port", `${LOCAL_PORT}:${HTTP}`, "--mount", dir]));
  return {
    dir,
    pids: () => ({ sshfs: () => named(daemon(), "sshfs") }), // the daemon's child
    async close() {
      await must("tp leave", sh.tp(["leave", POD]));
      await Deno.remove(dir).catch(() => {});
    },
  };
}

async function sshMount(sh: WorkstationShell, sshd: Sshd, podRoot: string, base: string): Promise<Mounted> {
  const dir = `${base}/ssh-mnt-${++mountCount}`;
  await Deno.mkdir(dir);
  const child = sh.spawn([
    "sshfs",
    "-f",
    "-F",
    "/dev/null",
    "-o",
    `port=${SSHD_PORT},IdentityFile=${sshd.key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes`,
    `root@${POD_IP}:${podRoot}`,
    dir,
  ]);
  const errors = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  const mounted = async () => (await sh.run(["findmnt", "-n", dir])).stdout.trim() !== "";
  for (let i = 0; i < 200 && !(await mounted()); i++) await new Promise((r) => setTimeout(r, 50));
  if (!(await mounted())) {
    try {
      Deno.kill(-child.pid, "SIGTERM");
    } catch { /* gone */ }
    await child.status;
    throw new Error(`sshfs over ssh did not mount within 10 s: ${(await errors).join("")}`);
  }
  // Connected and answering before the clock starts, as tp's mount is when tp intercept returns.
  await must("stat through sshfs over ssh", sh.run(["stat", dir]));
  return {
    dir,
    // sshfs double-forks ssh (sshfs.c start_ssh), which is then nobody's child: found by name and address.
    pids: () => ({ sshfs: () => named(child.pid, "sshfs"), ssh: () => sshClients(sh) }),
    async close() {
      await sh.run(["sh", "-c", `umount '${dir}' || umount -l '${dir}'`]);
      try {
        Deno.kill(-child.pid, "SIGTERM"); // its session: nsenter, sshfs, ssh
      } catch { /* exited after the unmount */ }
      await child.status;
      await errors;
      await Deno.remove(dir).catch(() => {});
    },
  };
}

// ---------------------------------------------------------------- cases

type Case = "read" | "write" | "tree";
const CASES: Case[] = ["read", "write", "tree"];

interface Sample {
  seconds: number;
  cpuSeconds: Record<string, number>;
}

async function timed(sh: WorkstationShell, cmd: string): Promise<number> {
  const t = performance.now();
  await must(cmd, sh.run(["sh", "-c", cmd], { timeoutMs: 300_000 }));
  return (performance.now() - t) / 1000;
}

async function runCase(sh: WorkstationShell, m: Mounted, c: Case, local: string): Promise<number> {
  switch (c) {
    case "read":
      return await timed(sh, `cat '${m.dir}/data/big.bin' >/dev/null`);
    case "write": {
      const s = await timed(sh, `cat '${local}' > '${m.dir}/data/up.bin'`);
      await must("rm", sh.run(["rm", `${m.dir}/data/up.bin`]));
      return s;
    }
    case "tree":
      return await timed(
        sh,
        `ls -lR '${m.dir}/tree' >/dev/null && find '${m.dir}/tree' -type f -exec cat {} + >/dev/null`,
      );
  }
}

type Way = "ssh" | "tp";
const WAYS: Way[] = ["ssh", "tp"];

/** How to mount one way, and the processes whose CPU its figures count. */
interface Contender {
  open(): Promise<Mounted>;
  procs: Procs;
}

/**
 * Each case on a fresh mount, RUNS times, the two ways taking turns (so that other work on the machine weighs on
 * both alike), with the CPU seconds each process spent during it.
 */
async function measure(
  sh: WorkstationShell,
  ways: Record<Way, Contender>,
  local: string,
): Promise<Record<Way, Record<Case, Sample[]>>> {
  const out = { ssh: { read: [], write: [], tree: [] }, tp: { read: [], write: [], tree: [] } } as Record<
    Way,
    Record<Case, Sample[]>
  >;
  for (let r = 0; r < RUNS; r++) {
    for (const c of CASES) {
      for (const w of WAYS) {
        const m = await ways[w].open();
        try {
          const all = Object.entries({ ...ways[w].procs, ...m.pids() }).map(([k, f]) => [k, f()] as const);
          const cpu = () => all.map(([k, ps]) => [k, ps.reduce((a, p) => a + cpuSeconds(p), 0)] as const);
          const before = new Map(cpu());
          const seconds = await runCase(sh, m, c, local);
          const spent = Object.fromEntries(cpu().map(([k, v]) => [k, round(v - before.get(k)!, 2)]));
          out[w][c].push({ seconds, cpuSeconds: spent });
          log(`run ${r + 1} ${c} ${w}: ${seconds.toFixed(2)} s; CPU s ${JSON.stringify(spent)}`);
        } finally {
          await m.close();
        }
      }
    }
  }
  return out;
}

function median(xs: Sample[]): Sample {
  return [...xs].sort((a, b) => a.seconds - b.seconds)[Math.floor(xs.length / 2)]!;
}

// ---------------------------------------------------------------- main

async function main(teardown: Teardown): Promise<number> {
  requireRoot();
  requireTools("ip", "dnsmasq", "iperf3", "sshfs", "sshd", "ssh", "ssh-keygen", "findmnt", "nsenter");
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  let failure: Error | null = null;
  const results: Partial<Record<Way, Record<Case, Sample[]>>> = {};
  try {
    const base = await Deno.makeTempDir({ prefix: "tp-bench-volumes-lab-" });
    teardown.add("files", () => Deno.remove(base, { recursive: true }));
    await Deno.chmod(base, 0o755);
    const podRoot = `${base}/pod`;
    log(`the pod's files: 100 MB, ${TREE_DIRS * TREE_FILES_PER_DIR} small files`);
    await makePodFiles(podRoot);
    const local = `${base}/local.bin`;
    await randomFile(local);
    await must("page cache", exec(["sh", "-c", `cat '${podRoot}/data/big.bin' '${local}' > /dev/null`]));
    log(`lab ${LAB.id} up`);
    const { manager, pod, agent } = await startAgentPod(teardown, ["--volume-root", podRoot]);
    const server = await startSshd(base, { listen: `${POD_IP}:${SSHD_PORT}`, netns: pod.netns });
    teardown.add("sshd", () => server.close());
    const shell = await startWorkstationShell();
    teardown.add("workstation namespace", () => shell.stop());
    teardown.add("daemon", () => forceQuit());
    teardown.add("daemon", () => shell.tp(["quit"], { timeoutMs: 15_000 })); // in the mounts' namespace
    await must("tp connect", shell.tp(["connect", "--manager-url", MANAGER_URL]));
    const daemon = (await daemonPid()) ?? 0;
    const common: Procs = { daemon: () => [daemon], manager: () => [manager.pid] };
    log(`sshfs over ssh to sshd in the pod (${POD_IP}:${SSHD_PORT}, through tp connect) and tp's mount, ${RUNS} runs`);
    Object.assign(
      results,
      await measure(shell, {
        ssh: {
          open: () => sshMount(shell, server, podRoot, base),
          procs: {
            ...common,
            sshd: () => named(server.pid, "sshd"),
            "sftp-server": () => named(server.pid, "sftp-server"),
          },
        },
        tp: {
          open: () => tpMount(shell, base, () => daemon),
          procs: { ...common, agent: () => [agent.pid], "sftp-server": () => named(agent.pid, "sftp-server") },
        },
      }, local),
    );
  } catch (e) {
    failure = e as Error;
  } finally {
    await teardown.run();
  }

  const med = (w: Way, c: Case) => results[w] && results[w][c].length ? median(results[w][c]) : undefined;
  const figure = (c: Case, s: Sample | undefined) =>
    s === undefined ? "n/a" : c === "tree" ? `${s.seconds.toFixed(2)} s` : `${(SIZE / MB / s.seconds).toFixed(0)} MB/s`;
  const label: Record<Case, string> = {
    read: "100 MB sequential read",
    write: "100 MB sequential write",
    tree: `ls -lR + cat, ${TREE_DIRS * TREE_FILES_PER_DIR} small files`,
  };
  const speed = (c: Case) => {
    const a = med("ssh", c), b = med("tp", c);
    return a && b ? a.seconds / b.seconds : undefined;
  };
  const rows = CASES.map((
    c,
  ) => [label[c], figure(c, med("ssh", c)), figure(c, med("tp", c)), speed(c)?.toFixed(2) ?? "n/a"]);
  const head = [`median of ${RUNS}`, "sshfs over ssh", "tp's mount", "speed vs ssh"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(" | ")} |`;
  const total = (s: Sample) => Object.values(s.cpuSeconds).reduce((a, b) => a + b, 0);
  /** The median over runs of the CPU seconds all processes spent: what a case costs, whatever else runs. */
  const cpuTotal = (w: Way, c: Case) => {
    const xs = (results[w]?.[c] ?? []).map(total).sort((a, b) => a - b);
    return xs.length ? xs[Math.floor(xs.length / 2)]! : undefined;
  };
  const cpu = (w: Way, c: Case) =>
    `total ${cpuTotal(w, c)?.toFixed(2) ?? "n/a"}: ` +
    (Object.entries(med(w, c)?.cpuSeconds ?? {}).filter(([, s]) => s > 0).map(([k, s]) => `${k} ${s.toFixed(2)}`)
      .join(", ") || "n/a");
  const targets = CASES.map((c) => {
    const s = speed(c);
    const strict = c !== "tree";
    return {
      what: `tp's mount ${strict ? "faster than" : "at least as fast as"} sshfs over ssh: ${label[c]}`,
      met: s === undefined ? null : strict ? s > 1 : s >= 1,
      value: s === undefined ? "n/a" : `${s.toFixed(2)}x`,
    };
  });
  const report = {
    startedAt,
    seconds: round((performance.now() - t0) / 1000, 1),
    lab: LAB.id,
    stateDir: STATE_DIR,
    runs: RUNS,
    results,
    cpuTotals: Object.fromEntries(WAYS.map((w) => [w, Object.fromEntries(CASES.map((c) => [c, cpuTotal(w, c)]))])),
    targets,
    error: failure?.message ?? null,
  };
  const file = await writeReport("volumes", startedAt, report);

  console.log(line(head));
  console.log(`| ${widths.map((w, i) => i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":").join(" | ")} |`);
  for (const r of rows) console.log(line(r));
  console.log("\nCPU seconds, all processes (median over runs), and by process (the median run of each case):");
  for (const c of CASES) {
    console.log(`  ${label[c]}:`);
    console.log(`    ssh: ${cpu("ssh", c)}`);
    console.log(`    tp:  ${cpu("tp", c)}`);
  }
  console.log();
  printTargets(targets);
  console.log(`\nwritten: ${file} (${report.seconds} s)`);
  if (failure) {
    console.error(`bench_volumes_lab: ${failure.stack ?? failure.message}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) await runBench("bench_volumes_lab", main);
