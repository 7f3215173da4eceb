/**
 * After a daemon that ended without `tp quit` (kill -9, a crash): what it left behind is cleaned up by the next
 * `tp connect` or `tp quit` (its socket, state file, DNS change and dead mounts), or, without root, named with the
 * command that cleans it. Its device and routes went with its process.
 */
import { repairDns } from "./dns.ts";
import { pidAlive, readState, removeState, StateAccessError, stateAccessError, type StatePaths } from "./state.ts";

/**
 * Cleans up after a daemon that ended without `tp quit` (kill -9, a crash): its socket and state file. Its device
 * and routes went with its process (the kernel's doing). Returns what it did, for the user, or null if nothing.
 */
export async function cleanupStale(paths: StatePaths): Promise<string | null> {
  if (Deno.uid() !== 0) return staleForNonRoot(paths);
  const state = await readState(paths);
  const socketThere = await Deno.stat(paths.socket).then(() => true, () => false);
  // Mounts of a daemon that died (kill -9): sshfs lost its stream, and the mount answers "Transport endpoint is not
  // connected" until it is unmounted.
  const mountNotes = await repairMountsOf(paths.dir);
  if (!state && !socketThere) {
    // A daemon that died before writing its state may still have changed DNS.
    const notes = [await repairDns(paths.dir), ...mountNotes].filter((n) => n);
    return notes.length ? `cleaned up after a daemon that ended without tp quit: ${notes.join("; ")}` : null;
  }
  if (state && pidAlive(state.pid) && state.pid !== Deno.pid) {
    throw new Error(
      `a tp daemon (pid ${state.pid}) is running but does not answer on ${paths.socket}; stop it (kill ${state.pid}) and retry`,
    );
  }
  await removeState(paths);
  const what = [`removed its control socket and state`];
  const dnsNote = await repairDns(paths.dir);
  if (dnsNote) what.push(dnsNote);
  what.push(...mountNotes);
  if (state?.device) what.push(`its network interface ${state.device} and its routes went with its process`);
  return `cleaned up after a daemon that ended without tp quit${state ? ` (pid ${state.pid})` : ""}: ${
    what.join("; ")
  }`;
}

/** Unmounts what a dead daemon left mounted; a line for each, for the user. */
async function repairMountsOf(stateDir: string): Promise<string[]> {
  const exists = await Deno.stat(`${stateDir}/mounts`).then(() => true, () => false);
  if (!exists) return [];
  const { repairMounts } = await import("../mount/mod.ts");
  return (await repairMounts(stateDir)).map((r) => `unmounted ${r.was} mount ${r.dir}`);
}

/**
 * Only root can clean up after a daemon (its files belong to root, and DNS repairs write system files): a non-root
 * tp says what is left and how to clean it, and returns null when nothing is.
 */
async function staleForNonRoot(paths: StatePaths): Promise<null> {
  const left: string[] = [];
  try {
    for await (const e of Deno.readDir(paths.dir)) if (e.name !== "daemon.log") left.push(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    if (e instanceof Deno.errors.PermissionDenied) throw stateAccessError(paths.socket);
    throw e;
  }
  if (!left.length) return null;
  throw new StateAccessError(
    `the last tp daemon ended without tp quit and left ${left.sort().join(", ")} in ${paths.dir}, which only root ` +
      `can clean up: run "sudo tp quit"`,
  );
}
