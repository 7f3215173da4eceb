/**
 * Helpers for tests that run on the lab (scripts/lab.ts): bring it up, run commands in its namespaces, and check
 * that what a test needs (root, a tool) is there. A test that lacks root or a tool fails and names what is missing;
 * nothing is skipped silently.
 */
import { type LabConfig, labConfig } from "../scripts/lab_config.ts";
import { up } from "../scripts/lab.ts";

export { type LabConfig, labConfig, labService } from "../scripts/lab_config.ts";

/** The main lab's configuration (TP_LAB_ID, default `tp`). */
export const LAB: LabConfig = labConfig();

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Throws unless this process is root: the lab and the TUN need it. */
export function requireRoot(): void {
  if (Deno.uid() !== 0) throw new Error("This test needs root (network namespaces, TUN devices): run it as root");
}

const toolCache = new Map<string, boolean>();

/** Throws naming every tool in `tools` that is not on PATH. */
export function requireTools(...tools: string[]): void {
  const missing = tools.filter((t) => {
    if (!toolCache.has(t)) {
      const found = (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
        try {
          return Deno.statSync(`${dir}/${t}`).isFile;
        } catch {
          return false;
        }
      });
      toolCache.set(t, found);
    }
    return !toolCache.get(t);
  });
  if (missing.length) {
    throw new Error(`This test needs ${missing.join(", ")} on PATH: install them (bash .ci/run installs them all)`);
  }
}

/** Brings the lab up (a no-op when it is up already). */
export async function ensureLab(config: LabConfig = LAB): Promise<LabConfig> {
  requireRoot();
  requireTools("ip", "dnsmasq", "iperf3");
  await up(config);
  return config;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time in milliseconds. */
  ms: number;
}

export interface ExecOptions {
  stdin?: Uint8Array | string;
  /** Kill the command after this many milliseconds (default 30 s); the result then has code 124. */
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Runs a command inside a lab namespace ("ws" or "cluster") and waits for it, bounded by a timeout. */
export function inNs(node: "ws" | "cluster", cmd: string[], opts: ExecOptions = {}, config = LAB): Promise<ExecResult> {
  const ns = node === "ws" ? config.namespaces.workstation : config.namespaces.cluster;
  return exec(["ip", "netns", "exec", ns, ...cmd], opts);
}

/**
 * Runs a command and waits for it, bounded by a timeout. It runs in a session of its own (setsid), so on a timeout
 * its whole process group is killed, children included, by the group's id.
 */
export async function exec(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const t0 = performance.now();
  const child = new Deno.Command("setsid", {
    args: cmd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(opts.env ? { env: opts.env } : {}),
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 30_000);
  try {
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin);
      await w.close().catch(() => {});
    }
    const out = await child.output();
    return {
      code: timedOut ? 124 : out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
      ms: performance.now() - t0,
    };
  } finally {
    clearTimeout(timer);
  }
}
