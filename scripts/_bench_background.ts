/**
 * scripts/bench.ts's background processes (servers, sshd, sshuttle, tp's manager, clients that hold connections):
 * each leads a process group of its own, its stdout read line by line; `stopAll` (in the run's teardown) ends every
 * one still running, by pid and then by its group's id.
 */

/** A background process of the bench's own: stdout read line by line, stderr kept (the last 20 kB). */
export class Background {
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #lines: string[] = [];
  readonly #waiters: (() => void)[] = [];
  #stderr = "";
  #done = false;
  readonly #drained: Promise<void>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | null;

  constructor(readonly name: string, cmd: string[], opts: { stdin?: boolean; env?: Record<string, string> } = {}) {
    // setsid: the process leads a group of its own, so its children end with it (killed by the group's id).
    const child = new Deno.Command("setsid", {
      args: cmd,
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      ...(opts.env ? { env: opts.env } : {}),
    }).spawn();
    this.#child = child;
    this.pid = child.pid;
    this.#writer = opts.stdin ? child.stdin.getWriter() : null;
    const out = (async () => {
      let buf = "";
      for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += s;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          this.#lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          this.#waiters.splice(0).forEach((w) => w());
        }
      }
    })();
    const err = (async () => {
      for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + s).slice(-20_000);
      }
    })();
    this.#drained = Promise.all([out, err]).then(() => {
      this.#done = true;
      this.#waiters.splice(0).forEach((w) => w());
    });
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The next stdout line, or null once the process closed its stdout or `timeoutMs` passed. */
  async line(timeoutMs: number): Promise<string | null> {
    const deadline = performance.now() + timeoutMs;
    while (this.#lines.length === 0 && !this.#done && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - performance.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#lines.shift() ?? null;
  }

  async json<T>(timeoutMs: number): Promise<T> {
    const l = await this.line(timeoutMs);
    if (l === null) throw new Error(`${this.name} said nothing within ${timeoutMs} ms: ${this.#stderr.trim()}`);
    return JSON.parse(l) as T;
  }

  async write(s: string): Promise<void> {
    await this.#writer?.write(new TextEncoder().encode(s));
  }

  async closeStdin(): Promise<void> {
    await this.#writer?.close().catch(() => {});
  }

  /**
   * SIGTERM to the process (so sshuttle, sshd and tp's manager clean up as they do on Ctrl-C), SIGKILL to it after
   * `graceMs`; then SIGKILL to what is left of its process group (its children), by the group's id.
   */
  async stop(graceMs = 3000): Promise<void> {
    await this.closeStdin();
    const kill = (pid: number, sig: Deno.Signal) => {
      try {
        Deno.kill(pid, sig);
      } catch { /* gone */ }
    };
    kill(this.pid, "SIGTERM");
    const t = setTimeout(() => kill(this.pid, "SIGKILL"), graceMs);
    await this.#child.status;
    clearTimeout(t);
    kill(-this.pid, "SIGKILL");
    await this.#drained;
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }
}

/** The background processes running, in the order they started. */
const started: Background[] = [];

/** Starts a background process that `stopAll` will end. */
export function background(name: string, cmd: string[], opts: { stdin?: boolean; env?: Record<string, string> } = {}) {
  const b = new Background(name, cmd, opts);
  started.push(b);
  return b;
}

/** Stops one background process and forgets it. */
export async function finish(b: Background): Promise<void> {
  const i = started.indexOf(b);
  if (i >= 0) started.splice(i, 1);
  await b.stop();
}

/** Stops every background process still running, the last started first. */
export async function stopAll(): Promise<void> {
  for (const b of started.splice(0).reverse()) await b.stop();
}
