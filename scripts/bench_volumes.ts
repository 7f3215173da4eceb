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
import { findSftpServer, serveSftp } from "../agent/sftp.ts";
import { mountSshfs } from "../cli/mount/mod.ts";
import { mountAt } from "../cli/mount/mountinfo.ts";
import { findProgram } from "../cli/mount/requirements.ts";
import { memoryByteStreamPair } from "../proto/byte_stream_memory.ts";

const MB = 1024 * 1024;
const SIZE = 100 * MB;
const TREE_DIRS = 50;
const TREE_FILES_PER_DIR = 100;

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

// --- the pod's files ---------------------------------------------------------------------------------------------

async function makePod(pod: string): Promise<void> {
  await Deno.mkdir(`${pod}/data`, { recursive: true });
  await sh(`head -c ${SIZE} /dev/urandom > '${pod}/data/big.bin'`);
  const chunk = new Uint8Array(4096);
  for (let d = 0; d < TREE_DIRS; d++) {
    await Deno.mkdir(`${pod}/tree/d${d}`, { recursive: true });
    for (let f = 0; f < TREE_FILES_PER_DIR; f++) {
      crypto.getRandomValues(chunk);
      await Deno.writeFile(`${pod}/tree/d${d}/f${f}.txt`, chunk.subarray(0, 100 + ((d * 131 + f * 17) % 3000)));
    }
  }
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

interface Sshd {
  port: number;
  key: string;
  close(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function startSshd(dir: string): Promise<Sshd> {
  const sshd = findProgram("sshd");
  if (!sshd) throw new Error("sshd is not installed: run scripts/install_deps --bench (openssh-server)");
  await sh(
    `ssh-keygen -q -t ed25519 -N '' -f '${dir}/host_key' && ssh-keygen -q -t ed25519 -N '' -f '${dir}/user_key'`,
  );
  await Deno.copyFile(`${dir}/user_key.pub`, `${dir}/authorized_keys`);
  // sshd's privilege separation directory; made (and removed at the end) only when missing.
  let madePrivsep = false;
  try {
    await Deno.stat("/run/sshd");
  } catch {
    await Deno.mkdir("/run/sshd", { mode: 0o755 });
    madePrivsep = true;
  }
  const port = freePort();
  const sftpServer = findSftpServer();
  await Deno.writeTextFile(
    `${dir}/sshd_config`,
    [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${dir}/host_key`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      `Subsystem sftp ${sftpServer}`,
    ].join("\n") + "\n",
  );
  const child = new Deno.Command(sshd, {
    args: ["-D", "-e", "-f", `${dir}/sshd_config`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Ready when it says it listens (it logs that at startup with -e).
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/Server listening/.test(text)) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`sshd exited: ${text}`);
    text += value;
  }
  const drain = (async () => {
    while (!(await lines.read()).done) { /* sshd's log, dropped */ }
  })();
  return {
    port,
    key: `${dir}/user_key`,
    async close() {
      child.kill("SIGTERM");
      await child.status;
      await drain;
      if (madePrivsep) await Deno.remove("/run/sshd").catch(() => {});
    },
  };
}

async function sshMount(sshd: Sshd, pod: string, base: string): Promise<Mounted> {
  const dir = `${base}/ssh-mnt-${++mountCount}`;
  await Deno.mkdir(dir);
  const child = new Deno.Command("sshfs", {
    args: [
      "-f",
      "-F",
      "/dev/null",
      "-o",
      `port=${sshd.port},IdentityFile=${sshd.key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes`,
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
  await makePod(pod);
  const local = `${base}/local.bin`;
  await sh(`head -c ${SIZE} /dev/urandom > '${local}'`);
  await sh(`cat '${pod}/data/big.bin' '${local}' > /dev/null`); // both in the page cache
  sshd = await startSshd(base);
  const s = sshd;
  console.error(`bench_volumes: sshfs over ssh (sshd on 127.0.0.1:${s.port}), ${RUNS} runs`);
  const ssh = await measure(() => sshMount(s, pod, base), local);
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
