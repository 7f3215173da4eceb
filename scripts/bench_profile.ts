/**
 * A V8 CPU profile of a Deno process started with `--inspect=HOST:PORT`, over the Chrome DevTools Protocol, for
 * `scripts/bench --profile` (Deno has no --cpu-prof). Run it in the process's network namespace:
 *
 *   bench_profile.ts HOST:PORT OUT.cpuprofile
 *
 * It prints {"ready":true} once profiling runs, stops when its stdin closes (at most 60 s), writes the profile
 * (open it in Chrome DevTools or speedscope) and prints one JSON line: the top functions by self time, and self time
 * by source file.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function and per file, in percent of all samples. */
export function summarize(p: Profile, top = 25): { functions: [string, number][]; files: [string, number][] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!);
    if (!n) continue;
    const dt = p.timeDeltas[i] ?? 0;
    const url = n.callFrame.url.replace(/^file:\/\/\/work\/main\//, "").replace(/^file:\/\//, "");
    const key = `${n.callFrame.functionName || "(anonymous)"} ${url}:${n.callFrame.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + dt);
    const f = url || n.callFrame.functionName; // "(garbage collector)", "(idle)", "(program)"
    file.set(f, (file.get(f) ?? 0) + dt);
  }
  const total = [...fn.values()].reduce((a, b) => a + b, 0) || 1;
  const pct = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k, Math.round((1000 * v) / total) / 10]) as [
      string,
      number,
    ][];
  return { functions: pct(fn), files: pct(file) };
}

async function main(): Promise<void> {
  const [hostPort, out] = Deno.args;
  if (!hostPort || !out) {
    console.error("usage: bench_profile.ts HOST:PORT OUT.cpuprofile");
    Deno.exit(2);
  }
  const list = await (await fetch(`http://${hostPort}/json/list`)).json() as { webSocketDebuggerUrl: string }[];
  const wsUrl = list[0]?.webSocketDebuggerUrl;
  if (!wsUrl) throw new Error(`no inspector target at ${hostPort}`);
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot open ${wsUrl}`));
  });
  let nextId = 1;
  const pending = new Map<number, (r: unknown) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data as string) as { id?: number; result?: unknown; error?: { message: string } };
    if (m.id !== undefined) pending.get(m.id)?.(m.error ? new Error(m.error.message) : m.result);
  };
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      const t = setTimeout(() => reject(new Error(`${method}: no answer within 30 s`)), 30_000);
      pending.set(id, (r) => {
        clearTimeout(t);
        pending.delete(id);
        r instanceof Error ? reject(r) : resolve(r);
      });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 200 });
  await call("Profiler.start");
  console.log(JSON.stringify({ ready: true }));
  const stop = setTimeout(() => {}, 60_000);
  const buf = new Uint8Array(64);
  for (let i = 0; i < 1000; i++) {
    const r = await Promise.race([Deno.stdin.read(buf), new Promise<null>((r) => setTimeout(() => r(null), 60_000))]);
    if (r === null) break;
  }
  clearTimeout(stop);
  const { profile } = await call("Profiler.stop") as { profile: Profile };
  await Deno.writeTextFile(out, JSON.stringify(profile));
  ws.close();
  console.log(JSON.stringify(summarize(profile)));
  Deno.exit(0);
}

if (import.meta.main) await main();
