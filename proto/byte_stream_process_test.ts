import assert from "node:assert/strict";
import { memoryByteStreamPair } from "./byte_stream_memory.ts";
import { bridgeProcess } from "./byte_stream_process.ts";

function spawn(script: string): Deno.ChildProcess {
  return new Deno.Command("sh", { args: ["-c", script], stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
}

async function readAll(s: { read(): Promise<Uint8Array | null> }): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let c = await s.read(); c; c = await s.read()) parts.push(c);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), o += p.length);
  return out;
}

Deno.test("bridgeProcess() carries 8 MB through cat with backpressure and ends the stream when cat exits", async () => {
  const [near, far] = memoryByteStreamPair({ highWater: 64 * 1024 });
  const done = bridgeProcess(spawn("exec cat"), near, { name: "cat", onReset: "kill" });
  const data = new Uint8Array(8 * 1024 * 1024).map((_, i) => (i * 31) & 0xff);
  const echoed = readAll(far);
  for (let i = 0; i < data.length; i += 100_000) {
    if (!far.write(data.subarray(i, i + 100_000))) await far.drained();
  }
  far.closeWrite();
  assert.deepEqual(await echoed, data);
  const end = await done;
  assert.equal(end.stream, "closed");
  assert.equal(end.bytesIn, data.length);
  assert.equal(end.bytesOut, data.length);
});

Deno.test("bridgeProcess() resets the stream when the process exits with an error, naming it", async () => {
  const [near, far] = memoryByteStreamPair();
  const lines: string[] = [];
  const done = bridgeProcess(spawn("echo oops >&2; exit 3"), near, {
    name: "helper",
    onReset: "kill",
    log: (l) => lines.push(l),
  });
  await assert.rejects(far.read(), /helper exited with code 3/);
  const end = await done;
  assert.equal(end.stream, "reset");
  assert.deepEqual(lines, ["oops"]);
  far.reset(); // nothing left to abort: no error
});

Deno.test("bridgeProcess() kills the process on a reset even while its stdin pipe is full", async () => {
  const [near, far] = memoryByteStreamPair();
  // sleep never reads its stdin, so the pipe fills and the bridge's write blocks.
  const done = bridgeProcess(spawn("exec sleep 1000"), near, { name: "sleep", onReset: "kill" });
  for (let i = 0; i < 40; i++) far.write(new Uint8Array(64 * 1024));
  far.reset("test over");
  const end = await done;
  assert.equal(end.stream, "reset");
  assert.equal(end.status.signal, "SIGTERM");
  assert.match(end.reason, /test over/);
});

Deno.test("bridgeProcess() on a reset in close-stdin mode lets the process see the end of its input", async () => {
  const [near, far] = memoryByteStreamPair();
  const done = bridgeProcess(spawn("cat >/dev/null; echo saw-eof >&2"), near, {
    name: "reader",
    onReset: "close-stdin",
    log: () => {},
  });
  far.write(new Uint8Array(1000));
  far.reset("gone");
  const end = await done;
  assert.equal(end.status.success, true);
  assert.equal(end.stream, "reset");
});

Deno.test("bridgeProcess() cuts long stderr lines and counts the lines over its limit", async () => {
  const [near, far] = memoryByteStreamPair();
  const lines: string[] = [];
  const done = bridgeProcess(
    spawn("head -c 5000 /dev/zero | tr '\\\\0' x >&2; echo >&2; for i in 1 2 3 4 5; do echo $i >&2; done"),
    near,
    { name: "noisy", onReset: "kill", log: (l) => lines.push(l), maxLogLines: 3 },
  );
  far.closeWrite();
  const end = await done;
  assert.equal(lines.length, 3);
  assert.equal(lines[0]!.length, 1003);
  assert.deepEqual(lines.slice(1), ["1", "2"]);
  assert.equal(end.logLinesDropped, 3);
  assert.equal(await far.read(), null);
});

Deno.test("bridgeProcess() on a reset in close-stdin mode ends the process's input even while its pipe is full", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [near, far] = memoryByteStreamPair();
    // The process reads nothing until the test creates `go` (polled, at most 30 s), so the pipe fills first.
    const script = `i=0; while [ ! -e ${dir}/go ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; ` +
      "cat >/dev/null; echo saw-eof >&2";
    const lines: string[] = [];
    const done = bridgeProcess(spawn(script), near, {
      name: "late",
      onReset: "close-stdin",
      log: (l) => lines.push(l),
    });
    for (let i = 0; i < 40; i++) far.write(new Uint8Array(64 * 1024));
    await new Promise((r) => setTimeout(r, 0));
    far.reset("gone");
    await Deno.writeTextFile(`${dir}/go`, "");
    const end = await done;
    assert.equal(end.status.success, true);
    assert.deepEqual(lines, ["saw-eof"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
