/** Whether a process runs with this pid (on Linux, from /proc); a zombie (exited, not yet reaped) counts as ended. */
export function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/** The argv that runs this same tp again: the compiled binary, or `deno run` of this entry point. */
export function selfArgv(): string[] {
  const exe = Deno.execPath();
  if (/(^|\/)deno$/.test(exe)) {
    const main = new URL("./main.ts", import.meta.url).pathname;
    return [exe, "run", "--allow-all", "--quiet", main];
  }
  return [exe];
}
