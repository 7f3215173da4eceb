/**
 * A pod's volumes mounted on this machine the way tp does it, without the tunnel: the agent's sftp-server
 * (agent/sftp.ts) and the workstation's sshfs (cli/mount/) joined by an in-memory ByteStream pair. Real sftp-server,
 * real sshfs, real FUSE; the mount is made in this test process's own mount namespace, under a temporary directory,
 * and always unmounted by `close()`.
 */
import { serveSftp, type SftpSession } from "../agent/sftp.ts";
import { mountSshfs, type MountUser, type SshfsMount } from "../cli/mount/mod.ts";
import { readMountTable } from "../cli/mount/mountinfo.ts";
import type { ByteStream } from "../proto/byte_stream.ts";
import { memoryByteStreamPair, type MemoryPairOptions } from "../proto/byte_stream_memory.ts";

export interface VolumeFixture {
  /** The temporary directory holding everything below. */
  base: string;
  /** The agent's root: the pod's volumes at their container paths. */
  pod: string;
  /** The mount point on the workstation. */
  dir: string;
  stateDir: string;
  mount: SshfsMount;
  sftp: SftpSession;
  /** The agent's end of the stream (a test may reset it). */
  agentEnd: ByteStream;
  log: string[];
  close(): Promise<void>;
}

export interface FixtureOptions {
  name?: string;
  user?: MountUser;
  pair?: MemoryPairOptions;
  cacheTimeout?: number;
  /** Wraps the agent's end before sftp-server gets it (to reset it mid-copy, say). */
  agentStream?: (s: ByteStream) => ByteStream;
}

/** The service account token a pod's volume holds, at its container path. */
export const TOKEN_PATH = "var/run/secrets/kubernetes.io/serviceaccount/token";
export const TOKEN = "eyJ-not-a-real-token";

export async function volumeFixture(opts: FixtureOptions = {}): Promise<VolumeFixture> {
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-" });
  await Deno.chmod(base, 0o755); // a non-root user must reach the mount point inside
  const pod = `${base}/pod`;
  await Deno.mkdir(`${pod}/var/run/secrets/kubernetes.io/serviceaccount`, { recursive: true });
  await Deno.writeTextFile(`${pod}/${TOKEN_PATH}`, TOKEN);
  await Deno.mkdir(`${pod}/data`);
  await Deno.writeTextFile(`${pod}/data/config.yaml`, "answer: 42\n");
  const stateDir = `${base}/state`;
  const dir = `${base}/mnt`;
  if (opts.user) {
    // Theirs to mount on, as fusermount3 would ask (root's mount point is left to mountSshfs to create).
    await Deno.mkdir(dir);
    await Deno.chown(dir, opts.user.uid, opts.user.gid);
  }
  const log: string[] = [];
  const [ws, agent] = memoryByteStreamPair(opts.pair ?? {});
  const agentEnd = opts.agentStream ? opts.agentStream(agent) : agent;
  const sftp = serveSftp(agentEnd, { root: pod, log: (l) => log.push(`sftp-server: ${l}`) });
  let mount: SshfsMount;
  try {
    mount = await mountSshfs(ws, dir, {
      name: opts.name ?? "test",
      stateDir,
      ...(opts.user ? { user: opts.user } : {}),
      ...(opts.cacheTimeout !== undefined ? { cacheTimeout: opts.cacheTimeout } : {}),
      log: (l) => log.push(`sshfs: ${l}`),
    });
  } catch (e) {
    await sftp.ended;
    await removeBase(base);
    throw e;
  }
  return {
    base,
    pod,
    dir,
    stateDir,
    mount,
    sftp,
    agentEnd,
    log,
    async close() {
      await mount.unmount();
      await sftp.ended;
      await removeBase(base);
    },
  };
}

/** Removes the temporary directory, after unmounting anything still mounted inside it (never deleting through it). */
export async function removeBase(base: string): Promise<void> {
  for (const e of readMountTable().filter((m) => m.mountPoint.startsWith(`${base}/`)).reverse()) {
    await new Deno.Command("umount", { args: ["-l", e.mountPoint] }).output();
  }
  if (readMountTable().some((m) => m.mountPoint.startsWith(`${base}/`))) {
    throw new Error(`Something is still mounted under ${base}; not removing it`);
  }
  await Deno.remove(base, { recursive: true });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a shell command, as `user` when given. */
export async function sh(cmd: string, user?: MountUser): Promise<RunResult> {
  const out = await new Deno.Command("sh", {
    args: ["-c", cmd],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** sha256 of a file, by sha256sum run as `user`. */
export async function sha256(path: string, user?: MountUser): Promise<string> {
  const r = await sh(`sha256sum '${path}'`, user);
  if (r.code !== 0) throw new Error(`sha256sum ${path} failed: ${r.stderr}`);
  return r.stdout.split(" ")[0]!;
}

/** Whether a process runs (and is not a zombie). */
export function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/** Live processes whose command line mentions `text` (sshfs names the mount's source, tp.NAME:). */
export function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (cmd.includes(text) && running(Number(e.name))) found.push(Number(e.name));
    } catch { /* gone */ }
  }
  return found;
}

/** Live processes named `comm` (not zombies) for which `where` holds. */
export function processes(comm: string, where: (pid: number) => boolean): number[] {
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    try {
      if (Deno.readTextFileSync(`/proc/${pid}/comm`).trim() !== comm) continue;
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (stat[stat.lastIndexOf(")") + 2] === "Z") continue;
      if (where(pid)) found.push(pid);
    } catch { /* gone */ }
  }
  return found;
}

/** Whether `pid` is in the network namespace `ns` (named, under /run/netns). */
export function inNetns(pid: number, ns: string): boolean {
  try {
    const a = Deno.statSync(`/proc/${pid}/ns/net`), b = Deno.statSync(`/run/netns/${ns}`);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}
