/**
 * Benchmark of the tunnel alone (no TUN): payload written into tunnel streams, through the manager, into a sink
 * that counts bytes; beside raw TCP connections to the same sink over the same path, in the same run.
 *
 *   ./scripts/deno run -A scripts/bench_tunnel.ts            # on the lab: client in tp-ws, manager + sink in tp-cluster
 *   ... --lab-id ID  on the lab ID instead (or TP_LAB_ID's; default tp, the main lab, which it leaves up)
 *   ./scripts/deno run -A scripts/bench_tunnel.ts --loopback # everything on 127.0.0.1 (separate processes)
 *   ... --mib 64   total MiB per case (default 64)
 *   ... --resumable  the streams tp's daemon opens: resumable (each side keeps what the other has not acknowledged)
 *
 * Cases: 1 and 8 streams, 1400-byte and 64 KiB writes, tp's own HTTP/2 transport (proto/h2, the one tp uses); and, for
 * the record, the same gRPC-web tunnel over Deno's fetch (h2c, one write per chunk), an earlier transport of tp's.
 * A case's time runs from the first write to the sink's byte count coming back, so it includes draining.
 */
import { connect } from "../proto/mod.ts";
import { decodeTunnelFrame, encodeDataFrame, encodeTunnelFrame, methods, Protocol } from "../proto/messages.ts";
import { CONTENT_TYPE, Deframer, encodeFrame } from "../proto/grpc_web.ts";
import { labConfig } from "./lab_config.ts";
import { selectLab } from "./_lab_fixture.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DENO = `${ROOT}scripts/deno`;

interface Result {
  path: string;
  streams: number;
  write: number;
  mb: number;
  seconds: number;
  mbPerS: number;
  msgPerS: number;
}

// --- sink: counts bytes per connection, answers the count (8 bytes) at EOF ---------------------------------------

async function sink(host: string, port: number): Promise<void> {
  const l = Deno.listen({ hostname: host, port });
  console.log("ready");
  for await (const c of l) {
    (async () => {
      const buf = new Uint8Array(256 * 1024);
      let n = 0;
      try {
        for (let k = await c.read(buf); k !== null; k = await c.read(buf)) n += k;
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, BigInt(n));
        await c.write(out);
      } catch { /* client gone */ }
      try {
        c.close();
      } catch { /* closed */ }
    })();
  }
}

// --- client cases ---------------------------------------------------------------------------------------------

function payload(size: number): Uint8Array {
  const b = new Uint8Array(size);
  crypto.getRandomValues(b.subarray(0, Math.min(size, 65536)));
  return b;
}

async function rawTcp(host: string, port: number, bytes: number, write: number): Promise<void> {
  const c = await Deno.connect({ hostname: host, port });
  c.setNoDelay(true);
  const p = payload(write);
  for (let sent = 0; sent < bytes; sent += write) {
    let o = 0;
    while (o < write) o += await c.write(p.subarray(o));
  }
  await c.closeWrite();
  const out = new Uint8Array(8);
  let got = 0;
  while (got < 8) {
    const k = await c.read(out.subarray(got));
    if (k === null) throw new Error("sink closed early");
    got += k;
  }
  c.close();
  const n = Number(new DataView(out.buffer).getBigUint64(0));
  if (n !== Math.ceil(bytes / write) * write) throw new Error(`sink counted ${n} bytes`);
}

async function tunnelStream(
  session: Awaited<ReturnType<typeof connect>>,
  host: string,
  port: number,
  bytes: number,
  write: number,
): Promise<void> {
  const t = await session.openTunnel({
    protocol: "tcp",
    source: { ip: "10.1.0.1", port: 40000 },
    destination: { ip: host, port },
  }, { resumable: Deno.args.includes("--resumable") });
  if (t.dial.code !== 1) throw new Error(`dial failed: ${t.dial.message}`);
  const p = payload(write);
  for (let sent = 0; sent < bytes; sent += write) {
    if (!t.write(p)) await t.drained();
  }
  t.closeWrite();
  const count = await t.read();
  if (!count || count.length < 8) throw new Error("no count from the sink");
  await t.ended;
}

/** The same tunnel over fetch (h2c prior knowledge), each write its own body chunk. */
async function fetchTunnel(
  url: string,
  sessionId: string,
  host: string,
  port: number,
  bytes: number,
  write: number,
): Promise<void> {
  const client = Deno.createHttpClient({ http1: false, http2: true });
  const p = payload(write);
  const frame = encodeDataFrame([p], p.length);
  let sent = 0;
  let opened = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (!opened) {
        opened = true;
        c.enqueue(encodeFrame(encodeTunnelFrame({
          kind: "open",
          open: {
            sessionId,
            protocol: Protocol.tcp,
            source: { ip: "10.1.0.1", port: 1 },
            destination: { ip: host, port },
          },
        })));
      } else if (sent < bytes) {
        c.enqueue(frame);
        sent += write;
      } else {
        c.enqueue(encodeFrame(encodeTunnelFrame({ kind: "fin" })));
        c.close();
      }
    },
  }, { highWaterMark: 4 });
  // `duplex: "half"` is in the fetch standard but not in Deno's RequestInit type.
  const init = { method: "POST", body, headers: { "content-type": CONTENT_TYPE }, client, duplex: "half" };
  const res = await fetch(`${url}${methods.Tunnel!.path}`, init as RequestInit & { client: Deno.HttpClient });
  const d = new Deframer(1 << 20);
  let gotCount = false;
  for await (const chunk of res.body!) {
    d.push(chunk);
    for (let f = d.next(); f; f = d.next()) {
      if (!f.trailers && decodeTunnelFrame(f.message).kind === "data") gotCount = true;
    }
  }
  client.close();
  if (!gotCount) throw new Error("no count over fetch");
}

async function timed(
  path: string,
  streams: number,
  write: number,
  totalBytes: number,
  run: (bytes: number) => Promise<void>,
): Promise<Result> {
  const per = Math.floor(totalBytes / streams / write) * write;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: streams }, () => run(per)));
  const seconds = (performance.now() - t0) / 1000;
  const bytes = per * streams;
  return {
    path,
    streams,
    write,
    mb: bytes / 1e6,
    seconds,
    mbPerS: bytes / 1e6 / seconds,
    msgPerS: bytes / write / seconds,
  };
}

async function client(managerUrl: string, sinkHost: string, sinkPort: number, mib: number): Promise<Result[]> {
  const total = mib * 1024 * 1024;
  const results: Result[] = [];
  const session = await connect(managerUrl, undefined, { clientName: "bench" });
  try {
    for (const streams of [1, 8]) {
      for (const write of [1400, 65536]) {
        results.push(await timed("raw tcp", streams, write, total, (b) => rawTcp(sinkHost, sinkPort, b, write)));
        results.push(
          await timed(
            "tunnel tp h2",
            streams,
            write,
            total,
            (b) => tunnelStream(session, sinkHost, sinkPort, b, write),
          ),
        );
      }
    }
    for (const write of [1400, 65536]) {
      const bytes = write === 1400 ? total / 4 : total;
      results.push(
        await timed(
          "tunnel fetch h2c",
          1,
          write,
          bytes,
          (b) => fetchTunnel(managerUrl, session.id, sinkHost, sinkPort, b, write),
        ),
      );
    }
  } finally {
    await session.depart();
  }
  return results;
}

// --- driver ---------------------------------------------------------------------------------------------------

function spawn(cmd: string[]): Deno.ChildProcess {
  return new Deno.Command(cmd[0]!, { args: cmd.slice(1), stdout: "piped", stderr: "null", stdin: "null" }).spawn();
}

async function waitLine(child: Deno.ChildProcess, want: RegExp, ms = 20_000): Promise<void> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + ms;
  while (!want.test(text)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${want}`);
    const r = await reader.read();
    if (r.done) throw new Error(`process ended before ${want}: ${text}`);
    text += r.value;
  }
  // Keep draining so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* drop */ }
  })().catch(() => {});
}

async function waitPort(ns: string[], host: string, port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const r = await new Deno.Command(ns[0] ?? "true", {
      args: [...ns.slice(1), "bash", "-c", `exec 3<>/dev/tcp/${host}/${port}`],
      stderr: "null",
    }).output().catch(() => ({ code: 1 }));
    if (ns.length === 0) {
      try {
        (await Deno.connect({ hostname: host, port })).close();
        return;
      } catch { /* not yet */ }
    } else if (r.code === 0) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

function table(results: Result[]): string {
  const rows = [["path", "streams", "write", "MB", "s", "MB/s", "msgs/s"]];
  for (const r of results) {
    rows.push([
      r.path,
      String(r.streams),
      r.write === 65536 ? "64 KiB" : `${r.write} B`,
      r.mb.toFixed(0),
      r.seconds.toFixed(2),
      r.mbPerS.toFixed(0),
      Math.round(r.msgPerS).toString(),
    ]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ")).join("\n");
}

async function main(args: string[]): Promise<void> {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (args[0] === "sink") return await sink(flag("--host")!, Number(flag("--port")));
  const mib = Number(flag("--mib") ?? 64);
  if (args[0] === "client") {
    const r = await client(flag("--manager")!, flag("--sink-host")!, Number(flag("--sink-port")), mib);
    console.log(JSON.stringify(r));
    return;
  }
  const loopback = args.includes("--loopback");
  const lab = loopback ? null : labConfig(selectLab("tp")); // `scripts/lab up` below reads TP_LAB_ID too
  const host = lab?.manager.ip ?? "127.0.0.1";
  const cluster = lab ? ["ip", "netns", "exec", lab.namespaces.cluster] : [];
  const ws = lab ? ["ip", "netns", "exec", lab.namespaces.workstation] : [];
  if (lab) {
    const up = await new Deno.Command(`${ROOT}scripts/lab`, { args: ["up"], stdout: "null" }).output();
    if (up.code !== 0) throw new Error("scripts/lab up failed");
  }
  const sinkPort = 7191;
  const managerPort = 8091;
  const children: Deno.ChildProcess[] = [];
  try {
    const s = spawn([
      ...cluster,
      DENO,
      "run",
      "-A",
      `${ROOT}scripts/bench_tunnel.ts`,
      "sink",
      "--host",
      host,
      "--port",
      String(sinkPort),
    ]);
    children.push(s);
    await waitLine(s, /ready/);
    const m = spawn([
      ...cluster,
      DENO,
      "run",
      "-A",
      `${ROOT}cli/main.ts`,
      "manager",
      "--listen",
      `${host}:${managerPort}`,
      "--allow",
      `${host}/32`,
      "--dns-server",
      host,
    ]);
    children.push(m);
    await waitPort(cluster, host, managerPort);
    const c = await new Deno.Command(ws[0] ?? DENO, {
      args: [
        ...ws.slice(1),
        ...(ws.length ? [DENO] : []),
        "run",
        "-A",
        `${ROOT}scripts/bench_tunnel.ts`,
        "client",
        "--manager",
        `http://${host}:${managerPort}`,
        "--sink-host",
        host,
        "--sink-port",
        String(sinkPort),
        "--mib",
        String(mib),
      ],
      stderr: "inherit",
    }).output();
    if (c.code !== 0) throw new Error("bench client failed");
    const results = JSON.parse(new TextDecoder().decode(c.stdout).trim().split("\n").pop()!) as Result[];
    const path = lab ? `lab veth ${lab.namespaces.workstation} -> ${lab.namespaces.cluster}` : "loopback";
    console.log(`tunnel benchmark (${path}, ${mib} MiB per case)\n`);
    console.log(table(results));
  } finally {
    for (const ch of children) {
      try {
        ch.kill("SIGTERM");
      } catch { /* gone */ }
      await ch.status;
    }
  }
}

if (import.meta.main) await main(Deno.args);
