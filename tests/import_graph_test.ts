/**
 * The shape of the code, as issue 18 asked a reader to find it: every import (type-only ones too) read from the files
 * git tracks, then checked for
 * - cycles: no module imports, through others, itself (a type both sides need gets a module of its own);
 * - layers: a lower layer never imports a higher one, in the order `mod.ts` documents (base, net/wire, ffi, net,
 *   proto, k8s, manager, agent, cli);
 * - dead code: every production module is reached from tp's entry points (cli/main.ts, the command modules it loads
 *   by name, mod.ts), except test support that says so by its name (`_*.ts`, testdata/) or is listed below with why;
 * - size: no file over 800 lines.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Production modules that only tests and benchmarks use, on purpose: doubles that ship with the code they stand in for. */
const TEST_SUPPORT = new Map([
  ["net/router/fault_tun.ts", "a TunDevice that injects loss and reordering (this kernel has no netem)"],
  ["proto/byte_stream_memory.ts", "two ByteStreams joined in memory, as wireguard-go ships tuntest"],
  ["net/tcp/mod.ts", "the TCP endpoint's documented public surface, for programs that embed it"],
  ["proto/_embed.ts", "regenerates proto/_manager_proto.ts (a build step)"],
]);

const LAYERS = ["base", "net/wire", "ffi", "net", "proto", "k8s", "manager", "agent", "cli", "(root)"];

const files = new TextDecoder().decode(
  (await new Deno.Command("git", { args: ["-C", ROOT, "ls-files", "*.ts"] }).output()).stdout,
).trim().split("\n");

const isTestOrScript = (f: string) => /_test\.ts$/.test(f) || f.startsWith("tests/") || f.startsWith("scripts/");
const isTestSupport = (f: string) => /(^|\/)_[^/]*\.ts$/.test(f) || f.includes("/testdata/") || TEST_SUPPORT.has(f);
const layer = (f: string) => f.startsWith("net/wire/") ? "net/wire" : !f.includes("/") ? "(root)" : f.split("/")[0]!;

/** Comments out, so that an example in a doc comment is not an import. Strings keep their content. */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

const IMPORT =
  /(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|import\s*["']([^"']+)["']/g;

const text = new Map<string, string>();
const graph = new Map<string, string[]>();
for (const f of files) {
  const t = await Deno.readTextFile(`${ROOT}/${f}`);
  text.set(f, t);
  const deps: string[] = [];
  for (const m of stripComments(t).matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? "";
    if (spec.startsWith(".")) deps.push(new URL(spec, `file:///${f}`).pathname.slice(1));
  }
  graph.set(f, deps);
}
const production = files.filter((f) => !isTestOrScript(f));

Deno.test("import graph: the test reads tp's modules and their imports", () => {
  // A check that read nothing would pass: the graph must hold the modules everything else depends on.
  for (const f of ["cli/main.ts", "proto/h2/connection.ts", "net/router/router.ts", "manager/server.ts"]) {
    assert.deepEqual(graph.has(f), true, f);
  }
  assert.deepEqual(graph.get("proto/h2/connection.ts")!.includes("proto/h2/stream.ts"), true);
});

Deno.test("import graph: no cycle among production modules", () => {
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    path.push(f);
    for (const d of graph.get(f) ?? []) {
      if (isTestOrScript(d)) continue;
      if (state.get(d) === "open") cycles.push([...path.slice(path.indexOf(d)), d].join(" -> "));
      else if (!state.has(d)) visit(d);
    }
    path.pop();
    state.set(f, "done");
  };
  for (const f of production) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

Deno.test("import graph: no layer imports a higher one", () => {
  const upward: string[] = [];
  for (const f of production) {
    for (const d of graph.get(f) ?? []) {
      const from = LAYERS.indexOf(layer(f)), to = LAYERS.indexOf(layer(d));
      if (from < 0) upward.push(`${f}: folder not in the layer list; add it to mod.ts and LAYERS`);
      else if (to > from) upward.push(`${f} -> ${d}`);
    }
  }
  assert.deepEqual(upward, []);
});

Deno.test("import graph: every production module is reached from tp's entry points", () => {
  const main = text.get("cli/main.ts")!;
  const commands = [...main.matchAll(/module: "([a-z_]+\.ts)"/g), ...main.matchAll(/new URL\("\.\/([a-z_]+\.ts)"/g)]
    .map((m) => `cli/${m[1]}`);
  const seen = new Set<string>();
  const todo = ["cli/main.ts", "mod.ts", ...commands];
  for (let f = todo.pop(); f !== undefined; f = todo.pop()) {
    if (seen.has(f) || !graph.has(f)) continue;
    seen.add(f);
    todo.push(...graph.get(f)!);
  }
  assert.deepEqual(commands.length > 10, true, "the command modules cli/main.ts loads by name");
  assert.deepEqual(production.filter((f) => !seen.has(f) && !isTestSupport(f)), []);
  // A listed double that the product starts using no longer needs its place on the list.
  assert.deepEqual([...TEST_SUPPORT.keys()].filter((f) => seen.has(f) || !graph.has(f)), []);
});

Deno.test("no file over 800 lines: a file is one thing a reader takes in", () => {
  const lines = (f: string) => text.get(f)!.replace(/\n$/, "").split("\n").length;
  const over = files.filter((f) => lines(f) > 800).map((f) => `${f}: ${lines(f)} lines`);
  assert.deepEqual(over, []);
});
