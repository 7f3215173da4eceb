/**
 * A TCP echo client for the resume tests and benchmark (tests/resume_lab_test.ts, scripts/bench_resume.ts), run in
 * the lab's workstation namespace: sends `mb` MB of seeded bytes to HOST:PORT at `rate` MB/s while reading the echo,
 * and prints one JSON line: whether the echo equals what was sent (by SHA-256), any error (a reset), the longest
 * pause between two reads, and the wall-clock time (Date.now) of the first read after that pause.
 *
 * Usage: deno run -A tests/resume_client.ts HOST PORT MB RATE_MB_PER_S
 */
import { createHash } from "node:crypto";

const [host, port, mb, rate] = Deno.args;
const total = Number(mb) * (1 << 20);
const chunk = 64 * 1024;
const perChunkMs = 1000 * chunk / (Number(rate) * (1 << 20));

function seeded(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const conn = await Deno.connect({ hostname: host!, port: Number(port) });
const sentHash = createHash("sha256");
const gotHash = createHash("sha256");
let error = "";
let received = 0;
let maxGapMs = 0;
let firstAfterGapAt = 0;

const writer = (async () => {
  const t0 = performance.now();
  for (let off = 0, i = 0; off < total; off += chunk, i++) {
    const piece = seeded(Math.min(chunk, total - off), i + 1);
    sentHash.update(piece);
    for (let o = 0; o < piece.length;) o += await conn.write(piece.subarray(o));
    const due = t0 + (i + 1) * perChunkMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await conn.closeWrite();
})();

const reader = (async () => {
  const buf = new Uint8Array(256 * 1024);
  let last = performance.now();
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    const now = performance.now();
    if (now - last > maxGapMs) {
      maxGapMs = now - last;
      firstAfterGapAt = Date.now();
    }
    last = now;
    received += n;
    gotHash.update(buf.subarray(0, n));
  }
})();

const failed = (e: unknown) => {
  error ||= `${(e as Error).name}: ${(e as Error).message}`;
  try {
    conn.close(); // the other half ends too
  } catch { /* closed */ }
};
await Promise.all([writer.catch(failed), reader.catch(failed)]);
try {
  conn.close();
} catch { /* closed */ }
const equal = error === "" && received === total && sentHash.digest("hex") === gotHash.digest("hex");
console.log(JSON.stringify({ sent: total, received, equal, error, maxGapMs: Math.round(maxGapMs), firstAfterGapAt }));
