/** Whether a process runs with this pid (on Linux, from /proc); a zombie (exited, not yet reaped) counts as ended. */
export function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}
