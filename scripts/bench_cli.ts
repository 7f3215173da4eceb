/**
 * tp's start time: `tp version`, `tp status` (not connected) and `tp --help` from source (scripts/tp) beside a bare
 * `deno run` of a one-line script with the same Deno. The commands take turns, round after round, so a machine
 * whose load changes during the run slows them alike; prints each one's median and its ratio to the bare run's.
 * Target: 2x or less. `scripts/bench_cli [ROUNDS]` (default 60).
 */
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const rounds = Number(Deno.args[0] ?? 60);
const WARMUP = 5;

const tmp = await Deno.makeTempDir({ prefix: "tp-bench-cli-" });
try {
  await Deno.writeTextFile(`${tmp}/one.ts`, 'console.log("hello");\n');
  const env = { TP_STATE_DIR: `${tmp}/state`, DENO_NO_UPDATE_CHECK: "1" }; // no daemon there: "not connected"
  const tp = `${root}/scripts/tp`;
  const commands: [string, string[]][] = [
    ["deno run (one line)", [Deno.execPath(), "run", `${tmp}/one.ts`]],
    ["tp version", [tp, "version"]],
    ["tp status", [tp, "status"]],
    ["tp --help", [tp, "--help"]],
  ];
  const times = commands.map(() => [] as number[]);
  for (let round = 0; round < WARMUP + rounds; round++) {
    for (const [i, [name, argv]] of commands.entries()) {
      const t0 = performance.now();
      const out = await new Deno.Command(argv[0]!, { args: argv.slice(1), env, stdout: "null", stderr: "piped" })
        .output();
      const ms = performance.now() - t0;
      const expected = name === "tp status" ? 3 : 0;
      if (out.code !== expected) {
        throw new Error(`${name} exited ${out.code}, not ${expected}: ${new TextDecoder().decode(out.stderr)}`);
      }
      if (round >= WARMUP) times[i]!.push(ms);
    }
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
  };
  const base = median(times[0]!);
  console.log(`${rounds} rounds, medians; target: tp within 2x the bare deno run`);
  console.log(`| ${"command".padEnd(19)} | median ms | x bare deno run |`);
  console.log(`| ${"-".repeat(19)} | --------: | --------------: |`);
  for (const [i, [name]] of commands.entries()) {
    const m = median(times[i]!);
    console.log(`| ${name.padEnd(19)} | ${m.toFixed(1).padStart(9)} | ${(m / base).toFixed(2).padStart(15)} |`);
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}
