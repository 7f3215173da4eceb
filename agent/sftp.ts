/**
 * The traffic-agent's half of a volume mount: OpenSSH's `sftp-server`, one per mount stream, speaking SFTP on its
 * stdin/stdout, which are bridged to the stream (proto/byte_stream_process.ts). It runs as the agent's own user with
 * its working directory at `root`, the directory under which the app's volume mounts appear at their container paths
 * (`/` in the agent container, which mounts the app's volumes at the same paths). The workstation's sshfs asks for
 * the server's working directory (`tp:` with no path), so every path it sends is relative to `root`; nothing else is
 * restricted: the server can do what the agent's user can.
 *
 * The session ends when the stream ends (the workstation's half-close ends sftp-server's input, and it exits; a reset
 * kills it) and the stream ends when sftp-server exits: half-closed after a clean exit, reset otherwise.
 */
import type { ByteStream } from "../proto/byte_stream.ts";
import { bridgeProcess, type ProcessBridgeEnd } from "../proto/byte_stream_process.ts";
import { errorMessage } from "../base/error_message.ts";

/** Where distributions put sftp-server (Debian and Ubuntu first), tried before $PATH. */
export const SFTP_SERVER_PATHS = [
  "/usr/lib/openssh/sftp-server", // Debian, Ubuntu (openssh-sftp-server)
  "/usr/lib/sftp-server", // Alpine (openssh-sftp-server), Arch
  "/usr/libexec/openssh/sftp-server", // Fedora, RHEL
  "/usr/libexec/sftp-server", // macOS, some BSDs
];

/** The agent has no sftp-server: no volume can be mounted. The message names the fix. */
export class SftpServerMissingError extends Error {
  override name = "SftpServerMissingError";
}

function isExecutableFile(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The sftp-server to run: the first of SFTP_SERVER_PATHS that exists, else `sftp-server` on PATH. */
export function findSftpServer(path = Deno.env.get("PATH") ?? ""): string {
  for (const p of SFTP_SERVER_PATHS) if (isExecutableFile(p)) return p;
  for (const d of path.split(":")) if (d && isExecutableFile(`${d}/sftp-server`)) return `${d}/sftp-server`;
  throw new SftpServerMissingError(
    `No sftp-server in the agent (looked in ${SFTP_SERVER_PATHS.join(", ")} and PATH): install OpenSSH's sftp ` +
      `server in the agent's image (Debian: apt-get install openssh-sftp-server; see deploy/Dockerfile)`,
  );
}

export interface SftpOptions {
  /** The directory the workstation's mount shows: where the app's volume mounts appear at their container paths. */
  root: string;
  /** sftp-server's stderr, one line at a time (bounded: see bridgeProcess). It logs errors only. */
  log?: (line: string) => void;
  /** The program to run (default: findSftpServer()). */
  sftpServer?: string;
}

export interface SftpSession {
  /** sftp-server's process id. */
  pid: number;
  /** Resolves when sftp-server has exited and the stream has ended on this side. */
  ended: Promise<ProcessBridgeEnd>;
}

/**
 * Serves one mount stream: spawns sftp-server in `root` and bridges it to `stream`. When it cannot start (no
 * sftp-server, no such root), the stream is reset with the reason, which the workstation shows, and that error is
 * thrown.
 */
export function serveSftp(stream: ByteStream, opts: SftpOptions): SftpSession {
  let child: Deno.ChildProcess;
  let program: string;
  try {
    program = opts.sftpServer ?? findSftpServer();
    const rootProblem = volumeRootProblem(opts.root);
    if (rootProblem) throw new TypeError(rootProblem);
    try {
      child = new Deno.Command(program, {
        // -e: log to stderr (to `log`), not syslog, at sftp-server's default level (errors only).
        args: ["-e"],
        cwd: opts.root,
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new SftpServerMissingError(
        `No sftp-server at "${program}" in the agent: install OpenSSH's sftp server in the agent's image ` +
          `(Debian: apt-get install openssh-sftp-server; see deploy/Dockerfile)`,
      );
    }
  } catch (e) {
    stream.reset(errorMessage(e));
    throw e;
  }
  const ended = bridgeProcess(child, stream, {
    name: "sftp-server",
    onReset: "kill",
    ...(opts.log ? { log: opts.log } : {}),
  });
  return { pid: child.pid, ended };
}

/** Why the agent cannot serve volumes from `root` (not a directory), in one line naming the fix; else undefined. */
export function volumeRootProblem(root: string): string | undefined {
  let why: string | undefined;
  try {
    if (!Deno.statSync(root).isDirectory) why = "not a directory";
  } catch (e) {
    why = e instanceof Deno.errors.NotFound ? "no such directory" : errorMessage(e);
  }
  if (why === undefined) return undefined;
  return `The agent cannot serve volumes from "${root}": ${why}; start tp agent with --volume-root ` +
    `(TP_AGENT_VOLUME_ROOT) set to the directory where the app's volumes appear (/ in a pod)`;
}

/**
 * Why a mount cannot be served at all (no sftp-server, a volume root that is not a directory), in one line naming
 * the fix; undefined when it can. The agent asks before it accepts a workstation's mount, so that the workstation
 * hears the reason in the answer and starts no sshfs.
 */
export function sftpProblem(opts: Pick<SftpOptions, "root" | "sftpServer">): string | undefined {
  if (opts.sftpServer === undefined) {
    try {
      findSftpServer();
    } catch (e) {
      return errorMessage(e);
    }
  }
  return volumeRootProblem(opts.root);
}
