/**
 * The mounts tp recorded (records.ts), as `tp status` lists them, and the repair after a daemon that died without
 * unmounting (kill -9): its sshfs processes lost their input and exited, leaving dead mounts that answer
 * "Transport endpoint is not connected".
 */
import { mountAt, readMountTable } from "./mountinfo.ts";
import { type MountRecord, readRecords, removeRecord, sshfsRunning } from "./records.ts";
import { isTpMount, type UnmountResult, unmountTpMount } from "./unmount.ts";

/** mounted: sshfs serves it; dead: mounted, sshfs gone (ENOTCONN to its user); gone: not mounted any more. */
export type MountState = "mounted" | "dead" | "gone";

export interface MountListing {
  record: MountRecord;
  state: MountState;
}

/** Every recorded mount and its state. */
export async function listMounts(stateDir: string): Promise<MountListing[]> {
  const table = readMountTable();
  const { records } = await readRecords(stateDir);
  return records.map((record) => {
    const mounted = isTpMount(mountAt(record.dir, table), record.name);
    return { record, state: !mounted ? "gone" : sshfsRunning(record) ? "mounted" : "dead" };
  });
}

export interface Repaired {
  dir: string;
  name: string;
  /** The state it was found in. */
  was: MountState;
  unmounted: UnmountResult;
}

/**
 * Removes every mount recorded in `stateDir`: unmounts it (lazily when busy), ends its sshfs if one still runs, and
 * drops the record. Call it only when no daemon owns the state dir: when a daemon starts, and from `tp quit` when
 * none answers. Each entry returned is one line for the user ("removed a dead mount at DIR").
 */
export async function repairMounts(stateDir: string): Promise<Repaired[]> {
  const done: Repaired[] = [];
  for (const { record, state } of await listMounts(stateDir)) {
    const unmounted = state === "gone" ? "not-mounted" : await unmountTpMount(record.dir, record.name);
    // Unmounting ends sshfs (its FUSE connection is gone); a leftover still running is told to stop all the same.
    if (record.pid !== undefined && sshfsRunning(record)) {
      try {
        Deno.kill(record.pid, "SIGTERM");
      } catch { /* exited meanwhile */ }
    }
    await removeRecord(stateDir, record.name);
    done.push({ dir: record.dir, name: record.name, was: state, unmounted });
  }
  return done;
}
