/**
 * The settings of one scripts/bench.ts run, which its other modules import: the command line (`--only`, `--paths`,
 * `--profile`, `--lab-id`), the lab it runs on (its namespaces, services, ports and tp's state dir), the sizes of the
 * measures, and running a command in the lab's workstation namespace.
 *
 * Loading it reads the command line and selects the lab: a bad `--only` or `--paths` throws here, before anything
 * starts.
 */
import { type LabConfig, labConfig, labService } from "./lab_config.ts";
import { exec } from "../tests/lab.ts";
import { argValue, selectLab } from "./_lab_fixture.ts";

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const TP = `${ROOT}/scripts/tp`;
export const DENO = Deno.execPath();
const CLIENT = `${ROOT}/scripts/bench_client.ts`;
/** scripts/bench_client.ts MODE ARGS..., as a command line (run in the workstation namespace). */
export const client = (...args: string[]) => [DENO, "run", "--allow-net", "--allow-read", CLIENT, ...args];
export const IPERF_SECONDS = 3;
export const WRK_CONNECTIONS = 32;
/** The few clients a person's tools open at once (a browser, a test suite): where waking up costs most. */
export const WRK_FEW_CONNECTIONS = 8;
/** Idle gaps (ms) before a request on one connection, and before a new connection. */
export const IDLE_GAPS = [0, 1, 10, 100, 500];
export const CONNECT_GAPS = [10, 200, 1000];
/** UDP rates offered (iperf3 -b; 0 is unlimited). */
export const UDP_RATES = ["200M", "500M", "1000M", "0"];
/** How long the idle CPU of a path's processes is measured, with nothing flowing. */
export const IDLE_CPU_SECONDS = 10;
export const DNSPERF_SECONDS = 3;
/** The name dnsperf asks for: a cluster name tp's DNS answers from its cache after the first query. */
export const DNS_NAME = "echo.default.svc.cluster.local";
/** Idle connections for the memory figure: the thousand, all on one HTTP/2 connection to the manager. */
export const HELD_CONNECTIONS = 1000;
export const CAPACITY_CONNECTIONS = 1000;
/**
 * UDP goes to an iperf3 server of the bench's own, bound to the iperf service address: the lab's iperf3 (and its
 * UDP echo) listen on the wildcard address, so over the kernel's route their UDP answers leave from the veth
 * address (198.18.0.2) and a connected client drops them. Bound to 198.19.0.11, the answers come from it.
 */
export const UDP_IPERF_PORT = 5202;

export type PathName = "kernel" | "sshuttle" | "tp";
const ALL_PATHS: PathName[] = ["kernel", "sshuttle", "tp"];

// ---------------------------------------------------------------- arguments

export const profile = Deno.args.includes("--profile");
const STEPS = ["tcp", "udp", "wrk", "rr", "idle", "connect", "dns", "idleCpu", "memory", "capacity"];
const only = argValue("only")?.split(",");
for (const o of only ?? []) if (!STEPS.includes(o)) throw new TypeError(`--only takes ${STEPS.join(", ")}; got "${o}"`);
/** Whether `--only` leaves the step in (it is absent, or names it). */
export const wanted = (step: string) => !only || only.includes(step);
export const paths = (argValue("paths") ?? ALL_PATHS.join(",")).split(",").map((p) => {
  if (!ALL_PATHS.includes(p as PathName)) throw new TypeError(`--paths takes kernel, sshuttle, tp; got "${p}"`);
  return p as PathName;
});

// ---------------------------------------------------------------- the lab

export const cfg: LabConfig = labConfig(selectLab("tpb"));
/** The daemon's state dir: one per lab id, so two benchmarks on two labs never share a daemon. */
export const STATE_DIR = cfg.id === "tpb" ? "/run/tp-bench" : `/run/tp-bench-${cfg.id}`;
export const WS = cfg.namespaces.workstation;
export const CL = cfg.namespaces.cluster;
export const echo = labService(cfg, "echo");
export const iperf = labService(cfg, "iperf");
export const HTTP_PORT = echo.ports["http"]!.port;
export const TCP_ECHO = echo.ports["tcp-echo"]!.port;
export const IPERF_PORT = iperf.ports["iperf"]!.port;
export const V4_SUBNETS = [...cfg.subnets.service, ...cfg.subnets.pod].filter((c) => !c.includes(":"));

export const log = (s: string) => console.error(`bench: ${s}`);

// ---------------------------------------------------------------- commands

/** Runs a command to completion in its own session, killing its whole group (by its id) after `timeoutMs`. */
export const run = exec;

/** Runs a command in the lab's workstation namespace (`run` there). */
export const inWs = (cmd: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}) =>
  run(["ip", "netns", "exec", WS, ...cmd], opts);
