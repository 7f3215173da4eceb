/**
 * The cost of waking a sleeping Deno process, the floor under every hop of a new connection after idle: two Deno
 * processes echo one byte over loopback TCP, back to back and after 10 ms and 200 ms of idle. Each round trip wakes
 * the echo process and then the client, so half of it is one wake-up (plus a little kernel work).
 *
 *   scripts/deno run -A scripts/bench_wakeup.ts [--rounds 3]
 *
 * Prints one JSON line per round: the p50 round trip in us per gap.
 */
const GAPS = [0, 10, 200];

async function echoServer(port: number): Promise<void> {
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  const c = await l.accept();
  l.close();
  c.setNoDelay(true);
  const b = new Uint8Array(1);
  while ((await c.read(b)) !== null) await c.write(b);
  c.close();
}

async function round(): Promise<Record<string, number>> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, "--serve", String(port)],
    stdout: "null",
  }).spawn();
  let c: Deno.TcpConn | undefined;
  for (let i = 0; i < 100 && !c; i++) {
    c = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
    if (!c) await new Promise((r) => setTimeout(r, 50));
  }
  if (!c) throw new Error(`the echo process did not listen on port ${port}`);
  const conn = c;
  conn.setNoDelay(true);
  const b = new Uint8Array(1);
  const out: Record<string, number> = {};
  try {
    for (const gap of GAPS) {
      const samples: number[] = [];
      for (let i = 0; i < (gap ? 25 : 2000); i++) {
        if (gap) await new Promise((r) => setTimeout(r, gap));
        const t0 = performance.now();
        await conn.write(b);
        if ((await conn.read(b)) === null) throw new Error("the echo process closed the connection");
        samples.push((performance.now() - t0) * 1000);
      }
      samples.sort((x, y) => x - y);
      out[`p50Us.gap${gap}ms`] = Math.round(samples[samples.length >> 1]!);
    }
  } finally {
    conn.close();
    await server.status;
  }
  return out;
}

const serve = Deno.args.indexOf("--serve");
if (serve >= 0) {
  await echoServer(Number(Deno.args[serve + 1]));
} else {
  const r = Deno.args.indexOf("--rounds");
  const rounds = r >= 0 ? Number(Deno.args[r + 1]) : 3;
  for (let i = 0; i < rounds; i++) console.log(JSON.stringify(await round()));
}
