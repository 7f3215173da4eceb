/**
 * Runs inside a test namespace (`ip netns exec tpt-stack-* deno run -A tests/stack_child.ts [flags]`): a TUN whose
 * packets go to a Router with in-process owners (no tunnel), for tests/stack_kernel_test.ts and
 * scripts/bench_stack.ts. The TUN gets 198.18.0.1/32, and 198.19.0.0/24 is routed to it. Services at 198.19.0.10:
 *
 *   7     echo (with backpressure; the app's FIN is echoed after the data)
 *   80    HTTP: `GET /bytes/N` answers N bytes of `patternBlock()` repeated; `POST` answers the body's sha256
 *   9000  sink (counts, consumes)          9001  source: --source-bytes N bytes of zeros, then FIN
 *   5201  forwarded to 127.0.0.1:5201 (an iperf3 server the test runs in the namespace)
 *   9     refused (RST)                    10    unreachable (ICMP host unreachable)
 *
 * Flags: --mtu N, --fault SEED (FaultyTun: 1 % loss, duplication and
 * reordering, 20 ms delay each way), --name NAME. Prints "ready" when the device and routes are up, and a JSON
 * line of router stats when stdin closes (then exits).
 */
import { createHash } from "node:crypto";
import { createTun } from "../ffi/tun_linux.ts";
import { Netlink } from "../ffi/netlink.ts";
import type { TunDevice } from "../ffi/tun.ts";
import { FaultyTun } from "../net/router/fault_tun.ts";
import type { RouterOwner, TcpSocket } from "../net/router/owner.ts";
import { Router } from "../net/router/router.ts";

/** The repeated 64 KiB block that `GET /bytes/N` sends (the test computes the same hash). */
export function patternBlock(): Uint8Array {
  const b = new Uint8Array(65536);
  let x = 0x12345678;
  for (let i = 0; i < b.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export interface StackChild {
  pid: number;
  /** Closes its stdin and waits until it exits (SIGKILL after 10 s): its router stats line, if it printed one. */
  stop(): Promise<string | undefined>;
}

/**
 * Starts this child in the network namespace `ns` (`ip netns exec`, as root) with `flags`, and waits until it says
 * ready; throws with what it printed if it does not.
 */
export async function startStackChild(ns: string, flags: string[]): Promise<StackChild> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns, Deno.execPath(), "run", "-A", new URL(import.meta.url).pathname, ...flags],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const stop = async () => {
    await child.stdin.close().catch(() => {});
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    for (let i = 0; i < 1000; i++) {
      const r = await reader.read();
      if (r.done) break;
      out += r.value;
    }
    await child.status;
    clearTimeout(kill);
    return out.split("\n").find((l) => l.startsWith("{"));
  };
  for (let i = 0; i < 100 && !out.includes("ready"); i++) {
    const r = await reader.read();
    if (r.done) break;
    out += r.value;
  }
  if (!out.includes("ready")) {
    await stop();
    throw new Error(`the stack child did not start: ${out}`);
  }
  return { pid: child.pid, stop };
}

/** A writer that respects the socket's send buffer: queued chunks go out as `onWritable` allows. */
class Sender {
  #queue: Uint8Array[] = [];
  #ending = false;
  constructor(readonly s: TcpSocket, readonly drained: () => void = () => {}) {
    s.onWritable = () => this.#flush();
  }
  get backlog(): number {
    return this.#queue.reduce((a, b) => a + b.length, 0);
  }
  send(data: Uint8Array): void {
    this.#queue.push(data);
    this.#flush();
  }
  end(): void {
    this.#ending = true;
    this.#flush();
  }
  #flush(): void {
    while (this.#queue.length) {
      const head = this.#queue[0]!;
      const n = this.s.write(head);
      if (n < head.length) {
        this.#queue[0] = head.subarray(n);
        return;
      }
      this.#queue.shift();
    }
    if (this.#ending) this.s.end();
    else this.drained();
  }
}

function echo(s: TcpSocket): void {
  let paused = false;
  const out = new Sender(s, () => {
    if (paused) {
      paused = false;
      s.resume();
    }
  });
  s.onData = (d) => {
    if (out.backlog > 0) {
      paused = true;
      return false;
    }
    out.send(d.slice());
    return true;
  };
  s.onEnd = () => out.end();
  s.accept();
}

function http(s: TcpSocket, block: Uint8Array): void {
  let drained = () => {};
  const out = new Sender(s, () => drained());
  let head = new Uint8Array(0);
  let body: { left: number; hash: ReturnType<typeof createHash> } | null = null;
  s.onData = (d) => {
    if (body === null) {
      const joined = new Uint8Array(head.length + d.length);
      joined.set(head);
      joined.set(d, head.length);
      head = joined;
      let end = -1;
      for (let i = 0; i + 3 < head.length; i++) {
        if (head[i] === 13 && head[i + 1] === 10 && head[i + 2] === 13 && head[i + 3] === 10) {
          end = i;
          break;
        }
      }
      if (end < 0) return true;
      const rest = head.slice(end + 4);
      const text = new TextDecoder().decode(head.subarray(0, end));
      const [method, path] = text.split(" ");
      const length = Number(/content-length: *(\d+)/i.exec(text)?.[1] ?? 0);
      if (method === "GET") {
        const n = Number(/^\/bytes\/(\d+)$/.exec(path ?? "")?.[1] ?? 0);
        out.send(new TextEncoder().encode(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\nConnection: close\r\n\r\n`));
        const full = Math.floor(n / block.length);
        let i = 0;
        // Queue lazily: one block per drain, so memory stays small.
        const more = () => {
          if (i < full) {
            i++;
            out.send(block);
          } else if (i === full) {
            i++;
            out.send(block.subarray(0, n % block.length));
            out.end();
          }
        };
        drained = more;
        more();
        return true;
      }
      body = { left: length, hash: createHash("sha256") };
      d = rest;
    }
    body.hash.update(d);
    body.left -= d.length;
    if (body.left <= 0) {
      const digest = body.hash.digest("hex");
      out.send(new TextEncoder().encode(`HTTP/1.1 200 OK\r\nContent-Length: 64\r\nConnection: close\r\n\r\n${digest}`));
      out.end();
    }
    return true;
  };
  s.accept();
}

function sink(s: TcpSocket): void {
  s.onData = () => true;
  s.onEnd = () => s.end();
  s.accept();
}

function source(s: TcpSocket, total: number): void {
  const chunk = new Uint8Array(256 * 1024);
  let sent = 0;
  const pump = () => {
    for (let i = 0; i < 1_000_000 && sent < total; i++) {
      const n = s.write(chunk.subarray(0, Math.min(chunk.length, total - sent)));
      sent += n;
      if (n === 0) return;
    }
    if (sent >= total) s.end();
  };
  s.onWritable = pump;
  s.onData = () => true;
  s.accept();
  pump();
}

async function forward(s: TcpSocket, port: number): Promise<void> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    s.refuse("refused");
    return;
  }
  const writer = conn.writable.getWriter();
  let closed = false;
  let paused = false;
  s.onData = (d) => {
    if (paused) return false;
    paused = true;
    writer.write(d.slice()).then(() => {
      paused = false;
      if (!closed) s.resume();
    }, () => s.abort());
    return true;
  };
  s.onEnd = () => void writer.close().catch(() => {});
  const close = () => {
    try {
      conn.close();
    } catch { /* closed already */ }
  };
  s.onReset = close;
  s.onClose = () => {
    closed = true;
    close();
  };
  s.accept();
  let wake: (() => void) | undefined;
  s.onWritable = () => wake?.();
  try {
    for await (const chunk of conn.readable) {
      for (let off = s.write(chunk); off < chunk.length && !closed; off += s.write(chunk.subarray(off))) {
        await new Promise<void>((r) => (wake = r));
      }
    }
    if (!closed) s.end();
  } catch {
    if (!closed) s.abort();
  }
}

if (import.meta.main) {
  const args = Deno.args;
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const name = flag("--name") ?? "tpt0";
  const mtu = Number(flag("--mtu") ?? 1500);
  const sourceBytes = Number(flag("--source-bytes") ?? 100e6);
  const faultSeed = flag("--fault");
  const block = patternBlock();

  const tun = createTun({ name, mtu });
  const nl = Netlink.open();
  nl.disableIpv6AddrGen(name);
  nl.setLinkUp(name);
  nl.addAddress(name, "198.18.0.1/32", { noPrefixRoute: true });
  nl.addRoute({ dst: "198.19.0.0/24", dev: name });
  nl.close();
  const dev: TunDevice = faultSeed === undefined
    ? tun
    : new FaultyTun(tun, { seed: Number(faultSeed), loss: 0.01, duplicate: 0.01, reorder: 0.01, delayMs: 20 });

  const owner: RouterOwner = {
    openTcp(s) {
      switch (s.flow.dstPort) {
        case 7:
          return echo(s);
        case 80:
          return http(s, block);
        case 9000:
          return sink(s);
        case 9001:
          return source(s, sourceBytes);
        case 5201:
          return void forward(s, 5201);
        case 10:
          return s.refuse("unreachable");
        default:
          return s.refuse("refused");
      }
    },
    openUdp(f) {
      f.onDatagram = (d) => f.send(d);
      f.accept();
    },
  };
  const router = new Router(dev, owner, {
    verifyChecksums: flag("--verify") !== "false",
    onError: (e) => console.error(`router: ${(e as Error)?.stack ?? e}`),
  });
  const running = router.run();
  console.log("ready");
  // Runs until stdin closes.
  for await (const _ of Deno.stdin.readable) { /* nothing is sent on stdin */ }
  router.stop();
  dev.close();
  await running;
  console.log(JSON.stringify({ ...router.stats(), tun: tun.stats }));
  Deno.exit(0);
}
