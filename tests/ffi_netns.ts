/**
 * Test helpers for ffi/ tests that need a kernel: a network namespace per test (named `tpt-ffi-*`), a child Deno
 * process inside it (tests/ffi_netns_child.ts) driven by JSON lines, and iproute2 as the independent observer.
 * Everything started here is ended by pid, and every namespace made here is deleted here.
 */
import { checksum, pseudoHeaderSumV4 } from "../net/wire/checksum.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();
const CHILD = new URL("./ffi_netns_child.ts", import.meta.url).pathname;

/** Fails (never skips) when the test cannot run here, naming what is missing. */
export async function requireRootAndIproute(): Promise<void> {
  if (Deno.uid() !== 0) {
    throw new Error(
      `This test needs root (uid 0, here ${Deno.uid()}) to create network namespaces and TUN devices: run it with sudo`,
    );
  }
  const probe = await run(["ip", "-V"]).catch(() => null);
  if (probe === null || probe.code !== 0) {
    throw new Error("This test needs iproute2's `ip` on PATH (apt-get install iproute2)");
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion. */
export async function run(argv: string[], options: { stdin?: string } = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd!, {
    args,
    cwd: ROOT,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `ip -n NS -j ARGS`, parsed. Throws with iproute2's message when it fails. */
export async function ipJson(ns: string, ...args: string[]): Promise<unknown[]> {
  const r = await run(["ip", "-n", ns, "-j", ...args]);
  if (r.code !== 0) throw new Error(`ip -n ${ns} -j ${args.join(" ")} failed: ${r.stderr.trim()}`);
  const text = r.stdout.trim();
  return text === "" ? [] : JSON.parse(text) as unknown[];
}

/** `ip -n NS ARGS` (for setup the test does not observe). */
export async function ip(ns: string, ...args: string[]): Promise<void> {
  const r = await run(["ip", "-n", ns, ...args]);
  if (r.code !== 0) throw new Error(`ip -n ${ns} ${args.join(" ")} failed: ${r.stderr.trim()}`);
}

/** Creates namespace `tpt-ffi-<suffix>-<pid>` with lo up, runs `fn`, and deletes the namespace whatever happens. */
export async function withNetns(suffix: string, fn: (ns: string) => Promise<void>): Promise<void> {
  await requireRootAndIproute();
  const ns = `tpt-ffi-${suffix}-${Deno.pid}`;
  const add = await run(["ip", "netns", "add", ns]);
  if (add.code !== 0) throw new Error(`ip netns add ${ns} failed: ${add.stderr.trim()}`);
  try {
    await ip(ns, "link", "set", "lo", "up");
    await fn(ns);
  } finally {
    const del = await run(["ip", "netns", "delete", ns]);
    if (del.code !== 0) console.error(`ip netns delete ${ns} failed: ${del.stderr.trim()}`);
  }
}

export interface ChildError {
  name: string;
  message: string;
  code: string | null;
}

/** A child Deno process inside a namespace, answering JSON requests (see tests/ffi_netns_child.ts). */
export class NetnsChild {
  readonly pid: number;
  readonly #process: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffered = "";
  #ended = false;

  private constructor(process: Deno.ChildProcess) {
    this.#process = process;
    this.pid = process.pid;
    this.#writer = process.stdin.getWriter();
    this.#reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Starts the child under `ip netns exec NS`, optionally behind a prefix command such as setpriv. */
  static start(ns: string, prefix: string[] = []): NetnsChild {
    // `ip netns exec` and setpriv exec their command, so the pid is the Deno process's pid.
    const process = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...prefix, DENO, "run", "-A", "--no-check", CHILD],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    return new NetnsChild(process);
  }

  /** Sends one request; resolves to `{ok}` or `{error}` (errors are data, so tests can assert on them). */
  async request(op: string, args: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<
    { ok: unknown; error?: undefined } | { ok?: undefined; error: ChildError }
  > {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify({ op, ...args }) + "\n"));
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000; i++) {
      const nl = this.#buffered.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffered.slice(0, nl);
        this.#buffered = this.#buffered.slice(nl + 1);
        return JSON.parse(line);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), deadline - Date.now())));
      const chunk = await Promise.race([this.#reader.read(), timeout]);
      clearTimeout(timer);
      if (chunk === "timeout") throw new Error(`child ${this.pid}: no answer to "${op}" within ${timeoutMs} ms`);
      if (chunk.done) throw new Error(`child ${this.pid} exited before answering "${op}"`);
      this.#buffered += chunk.value;
    }
    throw new Error(`child ${this.pid}: answer to "${op}" never ended`);
  }

  /** Sends a request and returns its result; throws the child's error message when it failed. */
  async call<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    const r = await this.request(op, args, timeoutMs);
    if (r.error) throw new Error(`child "${op}" failed: ${r.error.name}: ${r.error.message}`);
    return r.ok as T;
  }

  /** Sends a signal to the child by pid. */
  kill(signal: Deno.Signal): void {
    this.#process.kill(signal);
  }

  /** Asks the child to exit (or kills it by pid if it does not within 5 s) and releases the pipes. */
  async end(): Promise<Deno.CommandStatus> {
    if (!this.#ended) {
      this.#ended = true;
      await this.request("exit", {}, 5000).catch(() => this.kill("SIGKILL"));
    }
    return await this.#finish();
  }

  /** Waits for an exit already caused (e.g. by SIGKILL) and releases the pipes. */
  async #finish(): Promise<Deno.CommandStatus> {
    this.#ended = true;
    await this.#writer.close().catch(() => {});
    await this.#reader.cancel().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), 5000)));
    const status = await Promise.race([this.#process.status, timeout]);
    clearTimeout(timer);
    if (status !== "timeout") return status;
    this.kill("SIGKILL");
    return await this.#process.status;
  }

  /** After `kill`, waits for the exit. */
  async waitExit(): Promise<Deno.CommandStatus> {
    return await this.#finish();
  }
}

/** Starts a child, runs `fn`, and ends the child whatever happens. */
export async function withChild(ns: string, fn: (child: NetnsChild) => Promise<void>): Promise<void> {
  const child = NetnsChild.start(ns);
  try {
    await fn(child);
  } finally {
    await child.end();
  }
}

// --- Packet builders for the tests (the tests check the device, not these; the kernel judges them). ---

const v4 = (a: string) => Uint8Array.from(a.split(".").map(Number));

/** An IPv4 UDP packet with correct checksums. */
export function udp4Packet(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(28 + payload.length);
  const d = new DataView(p.buffer);
  p[0] = 0x45;
  d.setUint16(2, p.length);
  p[8] = 64;
  p[9] = 17;
  p.set(v4(src), 12);
  p.set(v4(dst), 16);
  d.setUint16(10, checksum(p, 0, 20));
  d.setUint16(20, sport);
  d.setUint16(22, dport);
  d.setUint16(24, 8 + payload.length);
  p.set(payload, 28);
  const pseudo = pseudoHeaderSumV4(d.getUint32(12), d.getUint32(16), 17, 8 + payload.length);
  d.setUint16(26, checksum(p, 20, p.length, pseudo) || 0xffff);
  return p;
}

export const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
export const fromHex = (s: string): Uint8Array => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
