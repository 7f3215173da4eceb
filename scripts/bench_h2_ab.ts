/**
 * What a change to tp's HTTP/2 costs on the data path: two trees of tp (a git revision and this checkout), taking
 * turns in interleaved rounds on 127.0.0.1, each round starting that tree's `tp manager` and measuring
 *
 *   - h2load (Debian's nghttp2-client) against the manager's Version call: requests per second;
 *   - the tunnel (that tree's proto/ client through that tree's manager to a sink or a source): upload with 64 KiB
 *     and 1400-byte writes, and download, one stream each, MB/s.
 *
 * The medians of the rounds are printed for each tree, with after/before ratios. The machine is shared, so the
 * rounds alternate which tree goes first.
 *
 *   scripts/deno run -A scripts/bench_h2_ab.ts --before 28a1c99 [--rounds 7] [--mib 128] [--requests 20000]
 *
 * The older tree is checked out into a temporary git worktree (removed at the end). Both run on this checkout's
 * pinned Deno; each client imports its own tree's proto/mod.ts.
 */

const ROOT = new URL("..", import.meta.url).pathname;
const DENO = `${ROOT}scripts/deno`;
const SELF = new URL(import.meta.url).pathname;

// --- servers the tunnel dials: a sink counting bytes, a source sending what it is asked for ----------------------

async function servers(host: string, sinkPort: number, sourcePort: number): Promise<void> {
  const sink = Deno.listen({ hostname: host, port: sinkPort });
  const source = Deno.listen({ hostname: host, port: sourcePort });
  console.log("ready");
  const serve = async (l: Deno.Listener, f: (c: Deno.Conn) => Promise<void>) => {
    for await (const c of l) {
      f(c).catch(() => {}).finally(() => {
        try {
          c.close();
        } catch { /* closed */ }
      });
    }
  };
  await Promise.all([
    serve(sink, async (c) => {
      const buf = new Uint8Array(256 * 1024);
      let n = 0;
      for (let k = await c.read(buf); k !== null; k = await c.read(buf)) n += k;
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, BigInt(n));
      await c.write(out);
    }),
    serve(source, async (c) => {
      const want = new Uint8Array(8);
      for (let got = 0; got < 8;) {
        const k = await c.read(want.subarray(got));
        if (k === null) return;
        got += k;
      }
      let left = Number(new DataView(want.buffer).getBigUint64(0));
      const chunk = new Uint8Array(256 * 1024);
      while (left > 0) left -= await c.write(chunk.subarray(0, Math.min(left, chunk.length)));
    }),
  ]);
}

// --- the client, run with a tree's proto/mod.ts -------------------------------------------------------------------

interface TunnelLike {
  dial: { code: number; message: string };
  write(b: Uint8Array): boolean;
  drained(): Promise<void>;
  closeWrite(): void;
  read(): Promise<Uint8Array | null>;
  ended: Promise<unknown>;
}
interface SessionLike {
  openTunnel(r: unknown): Promise<TunnelLike>;
  depart(): Promise<void>;
}

async function client(proto: string, url: string, host: string, sink: number, source: number, mib: number) {
  const mod = await import(proto) as {
    connect: (url: string, token: string | undefined, o: { clientName: string }) => Promise<SessionLike>;
  };
  const session = await mod.connect(url, undefined, { clientName: "bench-ab" });
  const open = async (port: number) => {
    const t = await session.openTunnel({
      protocol: "tcp",
      source: { ip: "10.1.0.1", port: 40000 },
      destination: { ip: host, port },
    });
    if (t.dial.code !== 1) throw new Error(`dial failed: ${t.dial.message}`);
    return t;
  };
  const bytes = mib * 1024 * 1024;
  const upload = async (write: number, total: number) => {
    const t = await open(sink);
    const p = new Uint8Array(write);
    const t0 = performance.now();
    for (let sent = 0; sent < total; sent += write) if (!t.write(p)) await t.drained();
    t.closeWrite();
    const count = await t.read();
    if (!count || count.length < 8) throw new Error("no count from the sink");
    const s = (performance.now() - t0) / 1000;
    await t.ended;
    return total / 1e6 / s;
  };
  const download = async (total: number) => {
    const t = await open(source);
    const want = new Uint8Array(8);
    new DataView(want.buffer).setBigUint64(0, BigInt(total));
    const t0 = performance.now();
    t.write(want);
    let got = 0;
    for (let c = await t.read(); c !== null; c = await t.read()) got += c.length;
    const s = (performance.now() - t0) / 1000;
    if (got !== total) throw new Error(`downloaded ${got} of ${total} bytes`);
    return total / 1e6 / s;
  };
  try {
    await upload(65536, 8 << 20); // warm-up
    const r = {
      up64k: await upload(65536, bytes),
      up1400: await upload(1400, Math.floor(bytes / 4 / 1400) * 1400),
      down: await download(bytes),
    };
    console.log(JSON.stringify(r));
  } finally {
    await session.depart();
  }
}

// --- driver -------------------------------------------------------------------------------------------------------

function spawn(cmd: string[], cwd?: string): Deno.ChildProcess {
  return new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    cwd: cwd ?? ROOT,
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  })
    .spawn();
}

async function waitLine(child: Deno.ChildProcess, want: RegExp, ms = 30_000): Promise<void> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => reader.cancel().catch(() => {}), ms);
  try {
    while (!want.test(text)) {
      const r = await reader.read();
      if (r.done) throw new Error(`no ${want} within ${ms} ms: ${text}`);
      text += r.value;
    }
  } finally {
    clearTimeout(timer);
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
}

async function waitPort(host: string, port: number): Promise<void> {
  for (let i = 0; i < 150; i++) {
    try {
      (await Deno.connect({ hostname: host, port })).close();
      return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  await child.status;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd: cwd ?? ROOT, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}${text}`);
  return text;
}

interface Round {
  rps: number;
  up64k: number;
  up1400: number;
  down: number;
}

async function round(tree: string, requests: number, mib: number, body: string): Promise<Round> {
  const host = "127.0.0.1";
  const [managerPort, sinkPort, sourcePort] = [8093, 7193, 7194];
  const srv = spawn([DENO, "run", "-A", SELF, "servers", String(sinkPort), String(sourcePort)]);
  const manager = spawn(
    [
      DENO,
      "run",
      "-A",
      `${tree}/cli/main.ts`,
      "manager",
      "--listen",
      `${host}:${managerPort}`,
      "--allow",
      `${host}/32`,
      "--dns-server",
      host,
    ],
    tree,
  );
  try {
    await waitLine(srv, /ready/);
    await waitPort(host, managerPort);
    const url = `http://${host}:${managerPort}`;
    const h2 = await run("h2load", [
      "-n",
      String(requests),
      "-c",
      "4",
      "-m",
      "16",
      "-d",
      body,
      "-H",
      "content-type: application/grpc-web+proto",
      `${url}/tp.manager.v1.Manager/Version`,
    ]);
    const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(h2)?.[1]);
    const ok = /status codes: (\d+) 2xx/.exec(h2)?.[1];
    if (!rps || Number(ok) !== requests) throw new Error(`h2load: ${h2}`);
    const c = await run(DENO, [
      "run",
      "-A",
      "--config",
      `${tree}/deno.json`,
      SELF,
      "client",
      `${tree}/proto/mod.ts`,
      url,
      host,
      String(sinkPort),
      String(sourcePort),
      String(mib),
    ], tree);
    const t = JSON.parse(c.trim().split("\n").pop()!) as Omit<Round, "rps">;
    return { rps, ...t };
  } finally {
    await stop(manager);
    await stop(srv);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(args: string[]): Promise<void> {
  if (args[0] === "servers") return await servers("127.0.0.1", Number(args[1]), Number(args[2]));
  if (args[0] === "client") {
    const [proto, url, host, sink, source, mib] = args.slice(1);
    return await client(proto!, url!, host!, Number(sink), Number(source), Number(mib));
  }
  const flag = (name: string, def: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1]! : def;
  };
  const before = flag("--before", "28a1c99");
  const rounds = Number(flag("--rounds", "7"));
  const mib = Number(flag("--mib", "128"));
  const requests = Number(flag("--requests", "20000"));
  const tmp = await Deno.makeTempDir({ prefix: "tp-bench-ab-" });
  const old = `${tmp}/before`;
  const body = `${tmp}/version_request`;
  await Deno.writeFile(body, new Uint8Array(5)); // one gRPC-web frame: an empty VersionRequest
  await run("git", ["-C", ROOT, "worktree", "add", "--detach", old, before]);
  const trees: [string, string][] = [[`before (${before})`, old], ["after (this checkout)", ROOT.replace(/\/$/, "")]];
  const results = new Map<string, Round[]>(trees.map(([name]) => [name, []]));
  try {
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? trees : [...trees].reverse();
      for (const [name, tree] of order) {
        const x = await round(tree, requests, mib, body);
        results.get(name)!.push(x);
        console.error(`round ${r + 1} ${name}: ${JSON.stringify(x)}`);
      }
    }
  } finally {
    await run("git", ["-C", ROOT, "worktree", "remove", "--force", old]).catch((e) => console.error(String(e)));
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  const keys: [keyof Round, string][] = [
    ["rps", "h2load Version, requests/s"],
    ["up64k", "tunnel upload, 64 KiB writes, MB/s"],
    ["up1400", "tunnel upload, 1400 B writes, MB/s"],
    ["down", "tunnel download, MB/s"],
  ];
  const [a, b] = trees.map(([name]) => results.get(name)!);
  console.log(`medians of ${rounds} interleaved rounds, 127.0.0.1, ${mib} MiB per tunnel case\n`);
  const rows = [["", trees[0]![0], trees[1]![0], "after/before"]];
  for (const [k, label] of keys) {
    const x = median(a!.map((r) => r[k]));
    const y = median(b!.map((r) => r[k]));
    rows.push([label, x.toFixed(0), y.toFixed(0), (y / x).toFixed(3)]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ")).join("\n"));
}

if (import.meta.main) await main(Deno.args);
