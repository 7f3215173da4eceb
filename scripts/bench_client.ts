/**
 * The small clients `scripts/bench` runs inside the lab's workstation namespace, each printing one JSON line:
 *
 *   rr HOST PORT [--size 64] [--count 5000] [--ms 1500]   request/response latency on ONE connection (TCP echo)
 *   hold HOST PORT [--count 1000]                         opens up to COUNT connections, echoes a byte on each,
 *                                                         prints {"opened":N,"failed":F}, holds them until stdin
 *                                                         closes
 *   first HOST PORT [--timeout-ms 10000]                  prints {"ready":true}, waits for a line on stdin, then
 *                                                         tries an HTTP GET every few ms until one succeeds and
 *                                                         prints the milliseconds since that line
 *   idle HOST PORT [--gaps 0,1,10,100,500] [--size 64]   request/response on ONE connection (TCP echo) with an idle
 *        [--ms 6000]                                      gap before each request: p50/p99 per gap (about MS of
 *                                                         idling per gap)
 *   connect HOST PORT [--gaps 10,200,1000] [--ms 7000]    a new connection after each idle gap: connect() and time
 *                                                         to the first byte of an HTTP answer, p50/p99 per gap
 *   burst HOST PORT [--count 10000] [--concurrency 32]    COUNT HTTP GETs, each on a new connection, COUNT/32 at a
 *         [--timeout-ms 5000] [--ms 120000]               time; each must answer 200 (with `"service":"NAME"` in
 *         [--expect NAME]                                 its body when --expect is given) within the timeout;
 *                                                         prints how many did, and why the others did not
 *
 * Every loop is bounded in count and time; every connection is closed before the process exits.
 */

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`--${name} must be a positive number, got "${args[i + 1]}"`);
  return v;
}

function say(obj: unknown): void {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(obj) + "\n"));
}

/** Reads exactly `buf.length` bytes; false on EOF first. */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let got = 0;
  while (got < buf.length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) return false;
    got += n;
  }
  return true;
}

async function writeAll(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += await conn.write(buf.subarray(off));
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Ping-pongs `size` bytes with an echo server: a warm-up, then up to `count` round trips within `ms`. */
async function rr(host: string, port: number, args: string[]): Promise<void> {
  const size = flag(args, "size", 64);
  const count = flag(args, "count", 5000);
  const ms = flag(args, "ms", 1500);
  const conn = await Deno.connect({ hostname: host, port });
  conn.setNoDelay(true);
  const out = new Uint8Array(size).fill(0x61);
  const back = new Uint8Array(size);
  try {
    for (let i = 0; i < 200; i++) {
      await writeAll(conn, out);
      if (!(await readFull(conn, back))) throw new Error("the echo server closed the connection during warm-up");
    }
    const samples = new Float64Array(count);
    let n = 0;
    const deadline = performance.now() + ms;
    for (; n < count && performance.now() < deadline; n++) {
      const t0 = performance.now();
      await writeAll(conn, out);
      if (!(await readFull(conn, back))) throw new Error("the echo server closed the connection");
      samples[n] = performance.now() - t0;
    }
    const s = samples.subarray(0, n).sort();
    const mean = s.reduce((a, b) => a + b, 0) / n;
    say({
      n,
      size,
      p50Us: quantile(s, 0.5) * 1000,
      p99Us: quantile(s, 0.99) * 1000,
      meanUs: mean * 1000,
      minUs: s[0]! * 1000,
    });
  } finally {
    conn.close();
  }
}

function gapsFlag(args: string[], fallback: number[]): number[] {
  const i = args.indexOf("--gaps");
  if (i < 0) return fallback;
  const gaps = (args[i + 1] ?? "").split(",").map(Number);
  if (!gaps.length || gaps.some((g) => !Number.isFinite(g) || g < 0 || g > 10_000)) {
    throw new RangeError(`--gaps takes milliseconds from 0 to 10000, separated by commas; got "${args[i + 1]}"`);
  }
  return gaps;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Samples per idle gap: about `budgetMs` of idling, at least `min` and at most `max` samples. */
function samplesFor(gapMs: number, budgetMs: number, min: number, max: number): number {
  return gapMs === 0 ? max : Math.max(min, Math.min(max, Math.floor(budgetMs / gapMs)));
}

function summary(samples: Float64Array): { n: number; p50Us: number; p99Us: number; minUs: number; maxUs: number } {
  const s = samples.slice().sort();
  return {
    n: s.length,
    p50Us: quantile(s, 0.5) * 1000,
    p99Us: quantile(s, 0.99) * 1000,
    minUs: s[0]! * 1000,
    maxUs: s[s.length - 1]! * 1000,
  };
}

/**
 * What a person feels after a pause: request/response on one connection, each request sent `gap` ms after the last
 * answer (the client's own timer wake-up is outside the measured time: the clock starts after it fired).
 */
async function idle(host: string, port: number, args: string[]): Promise<void> {
  const size = flag(args, "size", 64);
  const gaps = gapsFlag(args, [0, 1, 10, 100, 500]);
  const budgetMs = flag(args, "ms", 6000);
  const conn = await Deno.connect({ hostname: host, port });
  conn.setNoDelay(true);
  const out = new Uint8Array(size).fill(0x61);
  const back = new Uint8Array(size);
  const rt = async () => {
    const t0 = performance.now();
    await writeAll(conn, out);
    if (!(await readFull(conn, back))) throw new Error("the echo server closed the connection");
    return performance.now() - t0;
  };
  try {
    for (let i = 0; i < 200; i++) await rt();
    const result: Record<string, unknown> = {};
    for (const gap of gaps) {
      const samples = new Float64Array(samplesFor(gap, budgetMs, 12, gap === 0 ? 3000 : 300));
      for (let i = 0; i < samples.length; i++) {
        if (gap > 0) await sleep(gap);
        samples[i] = await rt();
      }
      result[String(gap)] = summary(samples);
    }
    say({ size, gaps: result });
  } finally {
    conn.close();
  }
}

/**
 * A new connection after each idle gap: the time connect() takes (through tp: until the cluster side dialed), and
 * from the start of connect() to the first byte of the answer to an HTTP GET.
 */
async function connectAfterIdle(host: string, port: number, args: string[]): Promise<void> {
  const gaps = gapsFlag(args, [10, 200, 1000]);
  const budgetMs = flag(args, "ms", 7000);
  const request = new TextEncoder().encode(`GET /bench-ttfb HTTP/1.1
Host: ${host}
Connection: close

`);
  const buf = new Uint8Array(16 * 1024);
  const result: Record<string, unknown> = {};
  const once = async (): Promise<[number, number]> => {
    const t0 = performance.now();
    const conn = await Deno.connect({ hostname: host, port });
    try {
      const t1 = performance.now();
      conn.setNoDelay(true);
      await writeAll(conn, request);
      const n = await conn.read(buf);
      const t2 = performance.now();
      if (n === null) throw new Error("the server closed the connection without an answer");
      // Read to the end, so the close is the server's and the next connection starts from idle.
      for (let i = 0; i < 1000 && (await conn.read(buf)) !== null; i++);
      return [t1 - t0, t2 - t0];
    } finally {
      conn.close();
    }
  };
  for (let i = 0; i < 20; i++) await once(); // warm-up
  for (const gap of gaps) {
    const n = samplesFor(gap, budgetMs, 8, 40);
    const connect = new Float64Array(n), ttfb = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      await sleep(gap);
      const [c, t] = await once();
      connect[i] = c;
      ttfb[i] = t;
    }
    result[String(gap)] = { connect: summary(connect), ttfb: summary(ttfb) };
  }
  say({ gaps: result });
}

/**
 * Opens up to `count` connections, 50 at a time, each proven open by one echoed byte within 3 s, and holds them.
 * It stops opening at the first batch with a failure (a path that cannot hold more), closing the failed ones.
 */
async function hold(host: string, port: number, args: string[]): Promise<void> {
  const count = flag(args, "count", 1000);
  const held: Deno.Conn[] = [];
  const t0 = performance.now();
  let failed = 0;
  let firstError = "";
  const one = async () => {
    let c: Deno.Conn | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      c?.close();
    }, 3000);
    try {
      c = await Deno.connect({ hostname: host, port });
      if (timedOut) throw new Error("no connection within 3 s");
      await writeAll(c, new Uint8Array([0x61]));
      if (!(await readFull(c, new Uint8Array(1)))) throw new Error("closed before echoing");
      held.push(c);
    } catch (e) {
      failed++;
      firstError ||= timedOut ? "no connection and echo within 3 s" : (e as Error).message;
      if (!timedOut) c?.close();
    } finally {
      clearTimeout(timer);
    }
  };
  for (let i = 0; i < count && failed === 0; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, count - i) }, one));
  }
  say({ opened: held.length, failed, firstError, ms: performance.now() - t0 });
  // Hold until the bench closes our stdin (bounded: at most 5 minutes).
  const timer = setTimeout(() => {}, 300_000);
  const buf = new Uint8Array(64);
  for (let i = 0; i < 1000; i++) if ((await Deno.stdin.read(buf)) === null) break;
  clearTimeout(timer);
  for (const c of held) {
    try {
      c.close();
    } catch { /* already closed */ }
  }
}

/** One HTTP GET with a deadline: true when the answer starts with a 200 status line. */
async function httpOk(host: string, port: number, timeoutMs: number): Promise<boolean> {
  let conn: Deno.Conn | undefined;
  const timer = setTimeout(() => conn?.close(), timeoutMs);
  try {
    conn = await Deno.connect({ hostname: host, port });
    await writeAll(conn, new TextEncoder().encode(`GET /bench-first HTTP/1.0\r\nHost: ${host}\r\n\r\n`));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    return n !== null && /^HTTP\/1\.[01] 200/.test(new TextDecoder().decode(buf.subarray(0, n)));
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

/** Waits for a line on stdin, then retries an HTTP GET every 2 ms until one succeeds. */
async function first(host: string, port: number, args: string[]): Promise<void> {
  const timeoutMs = flag(args, "timeout-ms", 10_000);
  say({ ready: true });
  const buf = new Uint8Array(64);
  if ((await Deno.stdin.read(buf)) === null) return;
  const t0 = performance.now();
  let attempts = 0;
  while (performance.now() - t0 < timeoutMs && attempts < 100_000) {
    attempts++;
    if (await httpOk(host, port, 1000)) {
      say({ ok: true, ms: performance.now() - t0, attempts });
      return;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  say({ ok: false, ms: performance.now() - t0, attempts });
}

/** How one GET of `burst` ended: "ok", or why not. */
type BurstOutcome = "ok" | "timeout" | "wrong-status" | "wrong-service" | `error: ${string}`;

/** One GET on a new connection, read to EOF (the server closes: `Connection: close`), bounded by `timeoutMs`. */
async function burstOne(host: string, port: number, expect: string | null, timeoutMs: number): Promise<BurstOutcome> {
  let conn: Deno.Conn | undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn?.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    conn = await Deno.connect({ hostname: host, port });
    if (timedOut) return "timeout";
    await writeAll(
      conn,
      new TextEncoder().encode(`GET /bench-burst HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    const buf = new Uint8Array(16 * 1024);
    let got = 0;
    for (let i = 0; i < 1000 && got < buf.length; i++) {
      const n = await conn.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    const text = new TextDecoder().decode(buf.subarray(0, got));
    if (!/^HTTP\/1\.[01] 200 /.test(text)) return "wrong-status";
    if (expect !== null && !text.includes(`"service":${JSON.stringify(expect)}`)) return "wrong-service";
    return "ok";
  } catch (e) {
    return timedOut ? "timeout" : `error: ${(e as Error).name}: ${(e as Error).message}`;
  } finally {
    clearTimeout(timer);
    if (!timedOut) {
      try {
        conn?.close();
      } catch { /* closed */ }
    }
  }
}

/** `count` GETs with new connections by `concurrency` workers; every outcome counted, none retried. */
async function burst(host: string, port: number, args: string[]): Promise<void> {
  const count = flag(args, "count", 10_000);
  const concurrency = flag(args, "concurrency", 32);
  const timeoutMs = flag(args, "timeout-ms", 5000);
  const ms = flag(args, "ms", 120_000);
  const i = args.indexOf("--expect");
  const expect = i >= 0 ? args[i + 1] ?? null : null;
  const outcomes = new Map<string, number>();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() - t0 < ms) {
      next++;
      const o = await burstOne(host, port, expect, timeoutMs);
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const ok = outcomes.get("ok") ?? 0;
  outcomes.delete("ok");
  say({
    count,
    sent: next,
    ok,
    failed: next - ok,
    timeouts: outcomes.get("timeout") ?? 0,
    why: Object.fromEntries(outcomes),
    ms: performance.now() - t0,
  });
}

if (import.meta.main) {
  const [cmd, host, portText, ...rest] = Deno.args;
  const port = Number(portText);
  if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error("usage: bench_client.ts rr|hold|first|burst|idle|connect HOST PORT [flags]");
    Deno.exit(2);
  }
  switch (cmd) {
    case "rr":
      await rr(host, port, rest);
      break;
    case "hold":
      await hold(host, port, rest);
      break;
    case "first":
      await first(host, port, rest);
      break;
    case "burst":
      await burst(host, port, rest);
      break;
    case "idle":
      await idle(host, port, rest);
      break;
    case "connect":
      await connectAfterIdle(host, port, rest);
      break;
    default:
      console.error(`bench_client.ts: unknown client "${cmd}"`);
      Deno.exit(2);
  }
}
