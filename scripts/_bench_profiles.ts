/**
 * scripts/bench.ts `--profile`: tp's daemon and manager run under the V8 inspector at these addresses, and
 * `profileDuring` records CPU profiles of both (with scripts/bench_profile.ts) while a measure runs.
 */
import { CL, DENO, log, ROOT, WS } from "./_bench_run.ts";
import { background, finish } from "./_bench_background.ts";
import type { PathResult } from "./_bench_measures.ts";

const PROFILER = `${ROOT}/scripts/bench_profile.ts`;
/** Where the daemon's and the manager's inspectors listen, each in its own namespace. */
export const DAEMON_INSPECT = "127.0.0.1:9239";
export const MANAGER_INSPECT = "127.0.0.1:9240";

/** Runs `f` while V8 profiles the daemon and the manager; writes .bench/profile-<tag>-*.cpuprofile. */
export async function profileDuring(tag: string, res: PathResult, f: () => Promise<void>): Promise<void> {
  const clients = ([["daemon", WS, DAEMON_INSPECT], ["manager", CL, MANAGER_INSPECT]] as const).map((
    [who, ns, at],
  ) => ({
    who,
    b: background(`profiler ${who}`, [
      "ip",
      "netns",
      "exec",
      ns,
      DENO,
      "run",
      "--allow-net",
      "--allow-write",
      PROFILER,
      at,
      `${ROOT}/.bench/profile-${tag}-${who}.cpuprofile`,
    ], { stdin: true }),
  }));
  try {
    for (const c of clients) await c.b.json<{ ready: boolean }>(15_000);
    await f();
  } finally {
    const out: Record<string, unknown> = {};
    for (const c of clients) {
      await c.b.closeStdin();
      out[c.who] = await c.b.json(30_000).catch((e) => `no profile: ${(e as Error).message}`);
      await finish(c.b);
    }
    res.details[`${tag}.profile`] = out;
    log(`profiles: .bench/profile-${tag}-{daemon,manager}.cpuprofile`);
  }
}
