/**
 * What the two volume benchmarks share (scripts/bench_volumes.ts in memory, scripts/bench_volumes_lab.ts on the lab):
 * the pod's files they read and write, and the throwaway sshd that sshfs over ssh, their baseline, connects to.
 */
import { findSftpServer } from "../agent/sftp.ts";
import { findProgram } from "../cli/mount/requirements.ts";

export const MB = 1024 * 1024;
/** The big file's size: the sequential read and write cases. */
export const SIZE = 100 * MB;
export const TREE_DIRS = 50, TREE_FILES_PER_DIR = 100;

async function sh(cmd: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: ${new TextDecoder().decode(out.stderr).trim()}`);
}

/** A file of SIZE random bytes at `path`. */
export async function randomFile(path: string): Promise<void> {
  await sh(`head -c ${SIZE} /dev/urandom > '${path}'`);
}

/** The pod's files under `root`: `data/big.bin` (SIZE random bytes) and `tree/`, TREE_DIRS folders of small files. */
export async function makePodFiles(root: string): Promise<void> {
  await Deno.mkdir(`${root}/data`, { recursive: true });
  await randomFile(`${root}/data/big.bin`);
  const chunk = new Uint8Array(4096);
  for (let d = 0; d < TREE_DIRS; d++) {
    await Deno.mkdir(`${root}/tree/d${d}`, { recursive: true });
    for (let f = 0; f < TREE_FILES_PER_DIR; f++) {
      crypto.getRandomValues(chunk);
      await Deno.writeFile(`${root}/tree/d${d}/f${f}.txt`, chunk.subarray(0, 100 + ((d * 131 + f * 17) % 3000)));
    }
  }
}

export interface Sshd {
  pid: number;
  /** The private key root logs in with. */
  key: string;
  close(): Promise<void>;
}

/**
 * OpenSSH's sshd on `listen` ("IP:PORT"), in the network namespace `netns` when given: a host key, a user key for
 * root, its config and pid file in `dir`, the sftp-server tp's agent runs as its sftp subsystem. Resolves once it
 * says it listens; `close()` ends it by its pid.
 */
export async function startSshd(dir: string, opts: { listen: string; netns?: string }): Promise<Sshd> {
  const sshd = findProgram("sshd");
  if (!sshd) throw new Error("sshd is not installed: run scripts/install_deps --bench (openssh-server)");
  await sh(
    `ssh-keygen -q -t ed25519 -N '' -f '${dir}/host_key' && ssh-keygen -q -t ed25519 -N '' -f '${dir}/user_key'`,
  );
  await Deno.copyFile(`${dir}/user_key.pub`, `${dir}/authorized_keys`);
  // sshd's privilege separation directory; made (and removed at the end) only when missing.
  const madePrivsep = await Deno.mkdir("/run/sshd", { mode: 0o755 }).then(() => true, () => false);
  await Deno.writeTextFile(
    `${dir}/sshd_config`,
    [
      `ListenAddress ${opts.listen}`,
      `HostKey ${dir}/host_key`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      `Subsystem sftp ${findSftpServer()}`,
    ].join("\n") + "\n",
  );
  const argv = [sshd, "-D", "-e", "-f", `${dir}/sshd_config`];
  const [cmd, ...args] = opts.netns ? ["ip", "netns", "exec", opts.netns, ...argv] : argv;
  const child = new Deno.Command(cmd!, { args, stdin: "null", stdout: "null", stderr: "piped" }).spawn();
  // Ready when it says it listens (it logs that at startup with -e).
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/Server listening/.test(text)) {
    const { value, done } = await lines.read();
    if (done) {
      if (madePrivsep) await Deno.remove("/run/sshd").catch(() => {});
      throw new Error(`sshd exited: ${text}`);
    }
    text += value;
  }
  const drain = (async () => {
    while (!(await lines.read()).done) { /* sshd's log, dropped */ }
  })();
  return {
    pid: child.pid,
    key: `${dir}/user_key`,
    async close() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await drain;
      if (madePrivsep) await Deno.remove("/run/sshd").catch(() => {});
    },
  };
}
