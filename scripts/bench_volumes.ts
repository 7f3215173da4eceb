/**
 * Benchmark of a pod's volumes on the workstation: sshfs -o slave over tp's bridge (agent/sftp.ts and cli/mount/
 * joined by an in-memory ByteStream pair, so the least tp's own bridging can cost) beside sshfs over ssh to a real
 * sshd on 127.0.0.1 (OpenSSH's default cipher, a throwaway host key and user key in a temporary directory), the same
 * files, in the same run. Needs root, sshfs, sftp-server and sshd (`scripts/install_deps --bench`).
 *
 *   ./scripts/deno run -A scripts/bench_volumes.ts [--runs 3]
 *
 * Cases, each on a fresh mount, the median of --runs: `ls -lR` and then `cat` of every file of a tree of 5,000 small
 * files (cold caches on the workstation: a new mount), 100 MB sequential read (`cat` to /dev/null), 100 MB sequential
 * write (`cat` of a local file into the mount; the time includes close, when sshfs has every write answered). The
 * source files sit in the page cache on both ends, so the disk is out of the figures.
 */
import { serveSftp } from "../agent/sftp.ts";
import { mountSshfs } from "../cli/mount/mod.ts";
import { mountAt } from "../cli/mount/mountinfo.ts";
import { memoryByteStreamPair } from "../proto/byte_stream_memory.ts";
import {
  makePodFiles,
  MB,
  randomFile,
  SIZE,
  type Sshd,
  startSshd,
  TREE_DIRS,
  TREE_FILES_PER_DIR,
} from "./_volumes_bench.ts";

const runsArg = Deno.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(Deno.args[runsArg + 1]) : 3;

async function sh(cmd: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: ${new TextDecoder().decode(out.stderr).trim()}`);
  return new TextDecoder().decode(out.stdout);
}

async function timed(cmd: string): Promise<number> {
  const t = performance.now();
  await sh(cmd);
  return (performance.now() - t) / 1000;
}

/** A mount to measure: where the pod's files appear, and how to take it down. */
interface Mounted {
  dir: string;
  close(): Promise<void>;
}

// --- tp: sftp-server and sshfs joined in memory ------------------------------------------------------------------

let mountCount = 0;

async function tpMount(pod: string, base: string): Promise<Mounted> {
  const [ws, agent] = memoryByteStreamPair();
  const sftp = serveSftp(agent, { root: pod });
  const dir = `${base}/tp-mnt-${++mountCount}`;
  const mount = await mountSshfs(ws, dir, { name: `bench${mountCount}`, stateDir: `${base}/state` });
  return {
    dir,
    async close() {
      await mount.unmount();
      await sftp.ended;
      await Deno.remove(dir);
    },
  };
}

// --- sshfs over ssh to a real sshd -------------------------------------------------------------------------------

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function sshMount(sshd: Sshd, port: number, pod: string, base: string): Promise<Mounted> {
  const dir = `${base}/ssh-mnt-${++mountCount}`;
  await Deno.mkdir(dir);
  const child = new Deno.Command("sshfs", {
    args: [
      "-f",
      "-F",
      "/dev/null",
      "-o",
      `port=${port},IdentityFile=${sshd.key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes`,
      `root@127.0.0.1:${pod}`,
      dir,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const errors = new Response(child.stderr).text();
  // sshfs -f gives no sign once mounted: look at the mount table, at most 10 s.
  for (let i = 0; i < 1000 && !mountAt(dir); i++) await new Promise((r) => setTimeout(r, 10));
  if (!mountAt(dir)) {
    child.kill("SIGTERM");
    await child.status;
    throw new Error(`sshfs over ssh did not mount: ${await errors}`);
  }
  return {
    dir,
    async close() {
      await sh(`umount '${dir}' || umount -l '${dir}'`);
      try {
        child.kill("SIGTERM");
      } catch { /* exited after the unmount */ }
      await child.status;
      await errors;
      await Deno.remove(dir);
    },
  };
}

// --- cases -------------------------------------------------------------------------------------------------------

interface Figures {
  tree: number;
  read: number;
  write: number;
}

async function measure(open: () => Promise<Mounted>, local: string): Promise<Figures> {
  const one = async (run: (m: Mounted) => Promise<number>) => {
    const m = await open();
    try {
      return await run(m);
    } finally {
      await m.close();
    }
  };
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const tree: number[] = [];
  const read: number[] = [];
  const write: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    tree.push(
      await one((m) =>
        timed(`ls -lR '${m.dir}/tree' >/dev/null && find '${m.dir}/tree' -type f -exec cat {} + >/dev/null`)
      ),
    );
    read.push(await one((m) => timed(`cat '${m.dir}/data/big.bin' >/dev/null`)));
    write.push(
      await one(async (m) => {
        const s = await timed(`cat '${local}' > '${m.dir}/data/up.bin'`);
        await Deno.remove(`${m.dir}/data/up.bin`);
        return s;
      }),
    );
  }
  return { tree: median(tree), read: median(read), write: median(write) };
}

if (Deno.uid() !== 0) {
  console.error("bench_volumes: run as root (mounts)");
  Deno.exit(1);
}
const base = await Deno.makeTempDir({ prefix: "tp-bench-volumes-" });
let sshd: Sshd | undefined;
try {
  const pod = `${base}/pod`;
  console.error(`bench_volumes: making the pod's files (100 MB, ${TREE_DIRS * TREE_FILES_PER_DIR} small files)`);
  await makePodFiles(pod);
  const local = `${base}/local.bin`;
  await randomFile(local);
  await sh(`cat '${pod}/data/big.bin' '${local}' > /dev/null`); // both in the page cache
  const port = freePort();
  sshd = await startSshd(base, { listen: `127.0.0.1:${port}` });
  const s = sshd;
  console.error(`bench_volumes: sshfs over ssh (sshd on 127.0.0.1:${port}), ${RUNS} runs`);
  const ssh = await measure(() => sshMount(s, port, pod, base), local);
  console.error(`bench_volumes: sshfs over tp's bridge, ${RUNS} runs`);
  const tp = await measure(() => tpMount(pod, base), local);

  const mbps = (s: number) => `${(SIZE / MB / s).toFixed(0)} MB/s`;
  const rows: [string, string, string, string][] = [
    ["100 MB sequential read", mbps(ssh.read), mbps(tp.read), (ssh.read / tp.read).toFixed(2)],
    ["100 MB sequential write", mbps(ssh.write), mbps(tp.write), (ssh.write / tp.write).toFixed(2)],
    [
      `ls -lR + cat, ${TREE_DIRS * TREE_FILES_PER_DIR} small files`,
      `${ssh.tree.toFixed(2)} s`,
      `${tp.tree.toFixed(2)} s`,
      (ssh.tree / tp.tree).toFixed(2),
    ],
  ];
  const head: [string, string, string, string] = [
    `median of ${RUNS}`,
    "sshfs over ssh",
    "sshfs over tp's bridge",
    "speed vs ssh",
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(" | ")} |`;
  console.log(line(head));
  console.log(`| ${widths.map((w, i) => i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":").join(" | ")} |`);
  for (const r of rows) console.log(line(r));
} finally {
  await sshd?.close();
  for (const e of (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")) {
    const mp = e.split(" ")[4];
    if (mp?.startsWith(`${base}/`)) await sh(`umount -l '${mp}'`).catch(() => {});
  }
  await Deno.remove(base, { recursive: true });
}
