/**
 * What the lab benchmarks share: which lab they run on (all of them), a teardown that runs once however they end, the
 * intercepted pod they measure through, and how they write their report (scripts/bench.ts, bench_intercept.ts,
 * bench_volumes_lab.ts, bench_resume.ts).
 *
 * What tests and benchmarks both use stays in the test fixtures (tests/connect_fixture.ts, tests/lab_pod.ts,
 * tests/k8s_lab_double.ts), which this module builds on: scripts/ benchmarks import tests/ fixtures, and tests/ import
 * from scripts/ only the lab itself (lab.ts, lab_config.ts). What only benchmarks need lives here, so no test
 * imports a benchmark's module.
 *
 * tests/lab.ts reads TP_LAB_ID when it is first imported: a benchmark calls `selectLab()` before it imports the lab's
 * helpers (with `await import`), and this module imports them only inside its functions.
 */
import type { ExecResult } from "../tests/lab.ts";
import type { ClusterProcess, LabManager } from "../tests/connect_fixture.ts";
import type { LabPod } from "../tests/lab_pod.ts";
import { labId } from "./lab_config.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The value after `--name` on the command line, if any. */
export function argValue(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

/**
 * The benchmark's lab id: `--lab-id`, else TP_LAB_ID, else `fallback` (a lab of the benchmark's own, so that it never
 * takes down the main lab `tp`). Set as TP_LAB_ID for the lab's helpers, which the caller imports after this.
 * Each id has its own namespaces and state directories, so two benchmarks on two ids never share a daemon.
 */
export function selectLab(fallback: string): string {
  Deno.env.set("TP_LAB_ID", chosenLabId(fallback));
  return labId(); // throws on an id the lab cannot use
}

const chosenLabId = (fallback: string) => argValue("lab-id") ?? Deno.env.get("TP_LAB_ID") ?? fallback;

/**
 * `selectLab` for a benchmark that imports the lab's helpers statically (they read TP_LAB_ID as they load): unless
 * TP_LAB_ID already names the lab chosen, runs this same script again with it set, and exits with its code.
 */
export async function reexecOnLab(fallback: string): Promise<void> {
  const id = chosenLabId(fallback);
  if (Deno.env.get("TP_LAB_ID") === id) return;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(Deno.mainModule).pathname, ...Deno.args],
    env: { TP_LAB_ID: id }, // checked as the lab's helpers load
  }).spawn();
  Deno.exit((await child.status).code);
}

/** Throws naming `what` unless the command exited 0. */
export async function must(what: string, r: Promise<ExecResult>): Promise<ExecResult> {
  const res = await r;
  if (res.code !== 0) throw new Error(`${what} failed (exit ${res.code}): ${(res.stderr || res.stdout).trim()}`);
  return res;
}

export const round = (v: number, digits: number): number => Math.round(v * 10 ** digits) / 10 ** digits;

/** What undoes a benchmark's setup: steps run last added first, each once; a step's failure is logged, not thrown. */
export class Teardown {
  readonly #steps: { what: string; f: () => Promise<unknown> }[] = [];
  #running: Promise<void> | null = null;

  constructor(readonly log: (s: string) => void) {}

  /** Adds a step; add it before starting what it undoes, so that a start that fails half-way is undone too. */
  add(what: string, f: () => Promise<unknown>): void {
    this.#steps.push({ what, f });
  }

  /** Whether the steps have begun to run (the benchmark is ending: what is still to start should not). */
  get begun(): boolean {
    return this.#running !== null;
  }

  /** Runs the steps (once: a second call waits for the first). */
  run(): Promise<void> {
    this.#running ??= (async () => {
      for (const { what, f } of this.#steps.reverse()) {
        try {
          await f();
        } catch (e) {
          this.log(`cleanup: ${what}: ${(e as Error).message}`);
        }
      }
    })();
    return this.#running;
  }
}

/**
 * Runs a benchmark's `main` and exits with its code. Its teardown runs once, however it ends: `main` runs it before
 * printing its report, SIGINT or SIGTERM run it and exit 130, a throw runs it and exits 1.
 */
export async function runBench(name: string, main: (teardown: Teardown) => Promise<number>): Promise<never> {
  const log = (s: string) => console.error(`${name}: ${s}`);
  const teardown = new Teardown(log);
  const onSignal = () => {
    log("interrupted: cleaning up");
    void teardown.run().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 1;
  try {
    code = await main(teardown);
  } catch (e) {
    log((e as Error).message);
  } finally {
    await teardown.run();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  Deno.exit(code);
}

/** A benchmark's goal and whether this run met it (null: not measured). */
export interface Target {
  what: string;
  met: boolean | null;
  value: string;
}

/** One line a target: ` ok`, `MISS` or `  ?` (not measured), what, and the figure. */
export function printTargets(targets: Target[]): void {
  for (const x of targets) console.log(`${x.met === null ? "  ?" : x.met ? " ok" : "MISS"}  ${x.what}: ${x.value}`);
}

/**
 * Writes `report` as `.bench/<name>-<startedAt>.json` in the checkout (and, with `latest`, as `.bench/latest.json`
 * too); returns the file's path relative to the checkout.
 */
export async function writeReport(
  name: string,
  startedAt: string,
  report: unknown,
  opts: { replacer?: (key: string, value: unknown) => unknown; latest?: boolean } = {},
): Promise<string> {
  await Deno.mkdir(`${ROOT}/.bench`, { recursive: true });
  const file = `.bench/${name}-${startedAt.replace(/[:.]/g, "-")}.json`;
  const json = JSON.stringify(report, opts.replacer, 2) + "\n";
  await Deno.writeTextFile(`${ROOT}/${file}`, json);
  if (opts.latest) await Deno.writeTextFile(`${ROOT}/.bench/latest.json`, json);
  return file;
}

// ---------------------------------------------------------------- the intercepted pod

/** The pod the intercept benchmarks measure through: its name (and workload's), IP, the app's and agent's ports. */
export const POD = "web";
export const POD_IP = "198.19.128.20";
export const APP_HTTP = 8080, APP_TCP = 7007;
export const AGENT_HTTP = 9080, AGENT_TCP = 9007;

export interface AgentPod {
  manager: LabManager;
  pod: LabPod;
  agent: ClusterProcess;
}

/**
 * A fresh lab (taken down first: nothing left from an earlier, interrupted run), `tp manager` in it with no daemon of
 * an earlier run, the lab pod POD (tests/lab_pod.ts: the app on APP_HTTP and APP_TCP) and `tp agent` beside it
 * (AGENT_HTTP -> APP_HTTP, AGENT_TCP -> APP_TCP, `agentArgs` after), registered with the manager. What undoes each
 * part is added to `teardown` before it starts: the lab, the manager, the pod with its agent.
 */
export async function startAgentPod(teardown: Teardown, agentArgs: string[] = []): Promise<AgentPod> {
  const { down } = await import("./lab.ts");
  const { LAB } = await import("../tests/lab.ts");
  const { forceQuit, MANAGER_URL, startLabManager } = await import("../tests/connect_fixture.ts");
  const { removePod, startPod } = await import("../tests/lab_pod.ts");
  const started: { manager?: LabManager; pod?: LabPod } = {};
  teardown.add("lab", () => down(LAB));
  await down(LAB);
  teardown.add("manager", async () => await started.manager?.stop());
  const manager = started.manager = await startLabManager();
  await forceQuit();
  teardown.add("pod", async () => {
    if (started.pod) await started.pod.stop(); // the agent and the app by pid, then the namespace and link
    else await removePod(POD);
  });
  const pod = started.pod = await startPod({
    name: POD,
    index: 0,
    podIp: POD_IP,
    httpPort: APP_HTTP,
    tcpPort: APP_TCP,
  });
  const agent = await pod.startAgent({
    managerUrl: MANAGER_URL,
    workload: POD,
    forwards: [`${AGENT_HTTP}:${APP_HTTP}`, `${AGENT_TCP}:${APP_TCP}`],
    extra: agentArgs,
  });
  return { manager, pod, agent };
}
