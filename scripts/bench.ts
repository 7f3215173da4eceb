/**
 * `scripts/bench [--profile] [--paths kernel,sshuttle,tp] [--lab-id tpb]`: the whole path through tp measured
 * beside the kernel's own route to the same services (the physical limit) and beside sshuttle, in one run, on a lab
 * of its own (`tpb-ws` / `tpb-cluster`, state in /run/tp-bench; another `--lab-id` gets /run/tp-bench-ID), printed
 * as a table of ratios and written to `.bench/bench-<time>.json` (and `.bench/latest.json`).
 *
 * The same clients, in the lab's workstation namespace, reach the same services in its cluster namespace by three
 * paths, one after the other:
 * - kernel: a plain route to the cluster's subnets via the veth (removed after);
 * - sshuttle: sshd in the cluster namespace (a throwaway host key and client key in a temp dir), sshuttle in the
 *   workstation namespace for the cluster's subnets (its NAT rules live in the namespace's own nftables/iptables);
 * - tp: `tp manager` in the cluster namespace, `tp connect --manager-url` in the workstation namespace.
 *
 * Measures: iperf3 upload and download (1 and 4 streams), UDP (iperf3 -u, offered 200, 500 and 1000 Mbit/s and
 * unlimited), new HTTP connections per second (wrk, `Connection: close`, 32 and 8 connections), TCP request/response
 * p50/p99 on one connection (64 bytes with the TCP echo), back to back and after idle gaps of 1, 10, 100 and 500 ms,
 * connect() and time to the first byte of a new connection after 10 ms, 200 ms and 1 s of idle, DNS queries per
 * second (dnsperf, one cached name: tp's DNS, and the cluster's DNS over the kernel's route), the idle CPU of the
 * path's own processes, time from start to the first successful request, memory per idle connection, and how many
 * of 1000 idle connections a path holds at once. `--only a,b` runs only the named steps (tcp, udp, wrk, rr, idle,
 * connect, dns, idleCpu, memory, capacity).
 * For tp it also records the daemon's and the manager's CPU time per measure and the daemon's counters; with
 * `--profile` it runs both under the V8 inspector and records CPU profiles (scripts/bench_profile.ts) during tp's
 * single-stream runs, its HTTP run and its request/response run.
 *
 * Needs root and: iproute2, dnsmasq-base, iperf3, wrk, dnsperf, sshuttle, openssh-server, openssh-client, nftables
 * or iptables. Every process it starts is ended by pid, and the lab goes down, even on failure. Bounded: about 5
 * minutes.
 *
 * Its parts, in scripts/_bench_*.ts: the run's settings (`_bench_run.ts`: arguments, lab, ports), its background
 * processes, prerequisites, measures, the suite that runs them over a path, V8 profiles, the three paths, the report.
 */
import { down, up } from "./lab.ts";
import { cfg, log, type PathName, paths, ROOT } from "./_bench_run.ts";
import { checkPrerequisites } from "./_bench_prerequisites.ts";
import { stopAll } from "./_bench_background.ts";
import { type PathResult, startUdpIperfServer } from "./_bench_measures.ts";
import { kernelPath, sshuttlePath, tpPath } from "./_bench_paths.ts";
import { machine, settings, table, targets } from "./_bench_report.ts";
import { printTargets, round, runBench, type Teardown, writeReport } from "./_lab_fixture.ts";

/** How each path is set up, measured and taken down. */
const PATHS: Record<PathName, (ending: Teardown) => Promise<PathResult>> = {
  kernel: kernelPath,
  sshuttle: sshuttlePath,
  tp: tpPath,
};

/** Brings the lab up, measures each path asked for, takes it all down, then writes and prints the report. */
async function main(teardown: Teardown): Promise<number> {
  checkPrerequisites(paths);
  const t0 = performance.now();
  await Deno.mkdir(`${ROOT}/.bench`, { recursive: true });
  const startedAt = new Date().toISOString();
  const results: Partial<Record<PathName, PathResult>> = {};
  let failure: Error | null = null;
  try {
    log(`lab ${cfg.id} up`);
    teardown.add("lab", () => down(cfg));
    teardown.add("processes", stopAll);
    await down(cfg); // a fresh lab: nothing left from an earlier, interrupted run
    await up(cfg);
    await startUdpIperfServer();
    for (const p of paths) {
      log(`--- ${p}`);
      results[p] = await PATHS[p](teardown);
    }
  } catch (e) {
    failure = e as Error;
  } finally {
    await teardown.run();
  }
  const t = targets(results);
  const report = {
    startedAt,
    seconds: round((performance.now() - t0) / 1000, 1),
    lab: cfg.id,
    machine: await machine(paths),
    settings: settings(),
    results,
    targets: t,
    error: failure?.message ?? null,
  };
  const file = await writeReport("bench", startedAt, report, {
    replacer: (_k, v) => typeof v === "number" ? round(v, 3) : v,
    latest: true,
  });

  console.log(table(results));
  console.log();
  printTargets(t);
  for (const p of paths) for (const e of results[p]?.errors ?? []) console.log(`note (${p}): ${e}`);
  console.log(`\nwritten: ${file} (${report.seconds} s)`);
  if (failure) {
    console.error(`bench: ${failure.message}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) await runBench("bench", main);
