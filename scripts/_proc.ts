/** What the benchmarks read about processes from /proc (Linux): resident memory, CPU time, descendants. */

/** Resident memory of one process, in KiB (0 when it is gone). */
export function rssKiB(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** `pid` and all its descendants. */
export function processTree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      parent.set(Number(e.name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch { /* gone */ }
  }
  const out = [pid];
  for (let i = 0; i < out.length && i < 10_000; i++) {
    for (const [child, ppid] of parent) if (ppid === out[i] && !out.includes(child)) out.push(child);
  }
  return out;
}

/** CPU time (user + system) of one process, in seconds (0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100 on Linux)
  } catch {
    return 0;
  }
}

/** CPU time of a process and its descendants, in seconds. */
export function treeCpuSeconds(pid: number): number {
  return processTree(pid).reduce((a, p) => a + cpuSeconds(p), 0);
}

/**
 * Context switches (voluntary and not) of each of `pid`'s threads, by thread id: a wake-up is a switch back in. Per
 * thread, because a sum over the process would drop the counts of threads that ended (Deno's blocking-pool threads
 * come and go) and could go down; compare two samples with `switchesBetween`.
 */
export function contextSwitches(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const s = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/status`);
        let n = 0;
        for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) n += Number(m[1]);
        out.set(`${pid}/${t.name}`, n);
      } catch { /* the thread ended */ }
    }
  } catch { /* gone */ }
  return out;
}

/** The switches between two samples, over the threads that lived through both (never negative). */
export function switchesBetween(before: Map<string, number>, after: Map<string, number>): number {
  let n = 0;
  for (const [tid, a] of after) {
    const b = before.get(tid);
    if (b !== undefined) n += a - b;
  }
  return n;
}
