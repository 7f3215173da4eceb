/**
 * The stack against the Linux kernel's own TCP (root): in a namespace of its own (`tpt-stack-*`, deleted by the
 * test), a TUN whose packets go to a Router with in-process owners (tests/stack_child.ts: echo, HTTP, sink,
 * forwarding to an iperf3 server), no tunnel. The kernel's clients are curl, socat and iperf3.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { patternBlock, startStackChild } from "./stack_child.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SVC = "198.19.0.10";
const MB100 = 100_000_000;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function run(argv: string[], timeoutMs = 120_000): Promise<Result> {
  const t0 = performance.now();
  const child = new Deno.Command(argv[0]!, { args: argv.slice(1), stdout: "piped", stderr: "piped", cwd: ROOT })
    .spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr), ms: performance.now() - t0 };
}

async function must(argv: string[], timeoutMs?: number): Promise<Result> {
  const r = await run(argv, timeoutMs);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited with ${r.code}: ${r.stderr.trim()}`);
  return r;
}

interface Stack {
  ns: string;
  /** Runs a bash command in the namespace. */
  bash(cmd: string, timeoutMs?: number): Promise<Result>;
  /** The router's stats, once the child has stopped (filled by `withStack` after `fn`). */
  stats: Record<string, unknown>;
}

/** A namespace with the stack child in it; everything is ended by pid and the namespace deleted. */
async function withStack(name: string, flags: string[], fn: (s: Stack) => Promise<void>): Promise<Stack> {
  if (Deno.uid() !== 0) throw new Error("This test needs root (network namespaces and a TUN device): run it with sudo");
  for (const tool of ["ip", "curl", "socat", "iperf3", "tshark"]) {
    const r = await run(["sh", "-c", `command -v ${tool}`]);
    if (r.code !== 0) throw new Error(`This test needs ${tool} on PATH (scripts/install_deps)`);
  }
  const ns = `tpt-stack-${name}-${Deno.pid}`;
  await must(["ip", "netns", "add", ns]);
  const stack: Stack = {
    ns,
    // `timeout` ends the whole pipeline's processes: killing only `ip` would leave them holding the pipes.
    bash: (cmd, t = 120_000) =>
      run(
        ["ip", "netns", "exec", ns, "timeout", "-s", "KILL", String(Math.ceil(t / 1000)), "bash", "-c", cmd],
        t + 5000,
      ),
    stats: {},
  };
  let failed = false;
  try {
    await must(["ip", "-n", ns, "link", "set", "lo", "up"]);
    const child = await startStackChild(ns, flags);
    try {
      await fn(stack);
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      const line = await child.stop();
      if (line) stack.stats = JSON.parse(line);
      if (failed) console.error(`router stats: ${line}`);
    }
  } finally {
    const del = await run(["ip", "netns", "delete", ns]);
    if (del.code !== 0) console.error(`ip netns delete ${ns}: ${del.stderr}`);
  }
  return stack;
}

function sha256Pattern(n: number): string {
  const block = patternBlock();
  const h = createHash("sha256");
  for (let left = n; left > 0; left -= block.length) h.update(block.subarray(0, Math.min(block.length, left)));
  return h.digest("hex");
}

/** 100 MB down and up with curl, 100 MB each way at once through the echo with socat: every byte verified. */
async function bulk(s: Stack, bytes: number): Promise<void> {
  const dir = `/tmp/${s.ns}`;
  await must(["mkdir", "-p", dir]);
  try {
    const down = await s.bash(`curl -sS -o /dev/stdout http://${SVC}/bytes/${bytes} | sha256sum`, 300_000);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout.split(" ")[0], sha256Pattern(bytes), "download content");

    await must(["bash", "-c", `head -c ${bytes} /dev/urandom > ${dir}/in.bin`]);
    const want = (await must(["sha256sum", `${dir}/in.bin`])).stdout.split(" ")[0];
    const up = await s.bash(`curl -sS -H 'Expect:' --data-binary @${dir}/in.bin http://${SVC}/upload`, 300_000);
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.stdout, want, "upload content (the sink's sha256)");

    // socat's shut-down sends our FIN after the file, and -t keeps reading the echo until the router's FIN.
    const echo = await s.bash(
      `socat -b 65536 -t 60 - TCP:${SVC}:7,shut-down < ${dir}/in.bin | sha256sum`,
      300_000,
    );
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout.split(" ")[0], want, "echo content");
  } finally {
    await run(["rm", "-rf", dir]);
  }
}

Deno.test("kernel TCP through the TUN: curl and socat move 100 MB each way, verified by sha256", async () => {
  const s = await withStack("bulk", [], (s) => bulk(s, MB100));
  assert.deepEqual(s.stats["drops"], {}, "no drops");
});

Deno.test("kernel TCP through a TUN with MTU 65535 (MSS 65495, as the daemon's): 100 MB each way, verified", async () => {
  const s = await withStack("bulk64k", ["--mtu", "65535"], (s) => bulk(s, MB100));
  assert.deepEqual(s.stats["drops"], {}, "no drops");
});

Deno.test("kernel TCP through the TUN: iperf3 moves 100 MB each way (forwarded to an iperf3 server)", async () => {
  await withStack("iperf", [], async (s) => {
    const server = new Deno.Command("ip", {
      args: ["netns", "exec", s.ns, "iperf3", "-s", "-B", "127.0.0.1", "-p", "5201"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await new Promise((r) => setTimeout(r, 300));
      for (const reverse of [false, true]) {
        const r = await s.bash(`iperf3 -c ${SVC} -p 5201 -n 100M -J ${reverse ? "-R" : ""}`, 120_000);
        assert.equal(r.code, 0, r.stdout.slice(0, 500) + r.stderr);
        const j = JSON.parse(r.stdout);
        const received = j.end.sum_received.bytes as number;
        assert.ok(received >= MB100, `${reverse ? "download" : "upload"}: ${received} bytes`);
      }
    } finally {
      server.kill("SIGTERM");
      await server.status;
    }
  });
});

Deno.test("kernel TCP through a faulty device (1 % loss, duplication, reordering, 20 ms each way): content intact", async () => {
  // Seeded faults; Reno through 1 % loss and a 40 ms round trip moves a few hundred KB/s, so the volume is small.
  const s = await withStack("fault", ["--fault", "1234"], (s) => bulk(s, 2_000_000));
  const tcp = s.stats["tcp"] as Record<string, number>;
  assert.ok(tcp["retransmittedSegments"]! > 0, "the faults did cost retransmissions");
});

Deno.test("half-close: socat shuts down its side and still reads the whole echo", async () => {
  await withStack("half", [], async (s) => {
    const r = await s.bash(`printf 'hello, half-close' | socat -t 10 - TCP:${SVC}:7,shut-down`, 20_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello, half-close");
    assert.ok(r.ms < 5000, `took ${r.ms} ms: the FIN came back at once`);
  });
});

Deno.test("a refused SYN gives the client Connection refused at once; an unreachable one No route to host", async () => {
  await withStack("refuse", [], async (s) => {
    const r = await s.bash(`socat - TCP:${SVC}:9 < /dev/null`, 10_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Connection refused/);
    assert.ok(r.ms < 1000, `took ${r.ms} ms`);
    const u = await s.bash(`socat - TCP:${SVC}:10 < /dev/null`, 10_000);
    assert.notEqual(u.code, 0);
    assert.match(u.stderr, /No route to host/);
    assert.ok(u.ms < 1000, `took ${u.ms} ms`);
  });
});

Deno.test("a tshark capture of a session on the TUN has no malformed packets and no warnings or errors", async () => {
  const file = `/tmp/tpt-stack-capture-${Deno.pid}.pcapng`;
  let capStderr = "";
  try {
    await withStack("pcap", [], async (s) => {
      const cap = new Deno.Command("ip", {
        args: ["netns", "exec", s.ns, "tshark", "-i", "tpt0", "-w", file, "-q"],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const err = cap.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      for (let i = 0; i < 100 && !text.includes("Capturing on"); i++) {
        const r = await err.read();
        if (r.done) break;
        text += r.value;
      }
      try {
        assert.match(text, /Capturing on/);
        await new Promise((r) => setTimeout(r, 1000)); // the capture starts a little after it says so
        const r = await s.bash(
          `curl -sS -o /dev/null http://${SVC}/bytes/3000000 && ` +
            `head -c 1000000 /dev/urandom | curl -sS -H 'Expect:' --data-binary @- http://${SVC}/upload && ` +
            `head -c 60000 /dev/urandom | socat -t 10 - TCP:${SVC}:7,shut-down | wc -c`,
          60_000,
        );
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /60000/);
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        cap.kill("SIGINT");
        await cap.status;
        for (let i = 0; i < 100; i++) {
          const r = await err.read();
          if (r.done) break;
          capStderr += r.value;
        }
        await err.cancel();
      }
    });
    // The payloads are random bytes: HTTP is not dissected, so that its heuristics do not read them as headers.
    // Checksums are validated too (tshark does not by default): every packet on the TUN carries complete ones.
    const checks = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"];
    const expert = await must(["tshark", "-r", file, "--disable-protocol", "http", ...checks, "-q", "-z", "expert"]);
    // Sections are "Errors (n)", "Warns (n)", "Notes (n)", "Chats (n)"; malformed packets are errors. Some warnings
    // are TCP's own dynamics on a loaded machine, not faults: flow control (a receiver slower than its sender says
    // "zero window" and the sender fills it); a retransmission timeout that fires before a late ACK, which the kernel
    // answers with a D-SACK (RFC 2883) and which tshark may call "Out-Of-Order" when it comes within its reordering
    // heuristic's few milliseconds; and, only when tshark itself dropped packets, the gaps in its capture. A segment
    // ACKed that was never sent, a malformed packet or a bad checksum still fail.
    const dropped = /(\d+) packets? dropped/.exec(capStderr)?.[1] ?? "0";
    const allowed = [/zero window/i, /window .*full/i, /D-SACK/, /out-of-order/i];
    if (dropped !== "0") allowed.push(/not captured/i, /unseen segment/i);
    const sections = expertSections(expert.stdout);
    assert.deepEqual(sections.Errors ?? [], [], expert.stdout);
    const faults = (sections.Warns ?? []).filter((w) => !allowed.some((a) => a.test(w)));
    assert.deepEqual(faults, [], `${capStderr}\n${expert.stdout}`);
    assert.match(expert.stdout, /Connection establish request \(SYN\): server port 80/, "the session was captured");
    const malformed = await must([
      "tshark",
      "-r",
      file,
      "--disable-protocol",
      "http",
      ...checks,
      "-Y",
      "_ws.malformed || _ws.expert.severity >= error",
    ]);
    assert.equal(malformed.stdout.trim(), "");
  } finally {
    await Deno.remove(file).catch(() => {});
  }
});

/** The summaries listed under each section ("Errors", "Warns", ...) of `tshark -z expert`. */
function expertSections(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let current: string[] | undefined;
  for (const line of text.split("\n")) {
    const head = /^(\w+) \(\d+\)$/.exec(line.trim())?.[1];
    if (head) {
      current = out[head] = [];
      continue;
    }
    const summary = /^\s*\d+\s+\S+\s+\S+\s+(.*)$/.exec(line)?.[1];
    if (summary && current) current.push(summary.trim());
  }
  return out;
}
