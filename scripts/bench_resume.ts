/**
 * `scripts/deno run -A scripts/bench_resume.ts [--lab-id tpr] [--rounds 5]`: how fast open connections flow again
 * after the link to the cluster comes back, on a lab of its own (`tpr-ws` / `tpr-cluster`), printed as a table and
 * written to `.bench/resume-<time>.json`.
 *
 * Each round: a TCP echo through tp (tests/resume_client.ts, 20 MB at 10 MB/s), the workstation's end of the lab's
 * link set down in the middle, kept down until tp noticed (it says reconnecting) and one second more, then up. It
 * measures how long tp took to notice (HTTP/2 PING without answer), and the time from the link coming back to the
 * echo's first byte after the pause: reconnecting, resuming the session, and each side sending again what the other
 * had not received. Target (issue 17): under 1 s.
 *
 * Needs root, iproute2, dnsmasq-base, iperf3 (the lab). Every process it starts is ended by pid; the lab goes down,
 * even on failure. Bounded: about 10 s a round.
 */
import { argValue, runBench, selectLab, type Teardown, writeReport } from "./_lab_fixture.ts";

selectLab("tpr"); // before the lab's helpers are imported: they read TP_LAB_ID
const { LAB, requireRoot } = await import("../tests/lab.ts");
const { cutLink, forceQuit, MANAGER_URL, resumeEcho, setWorkstationLink, startLabManager, tp } = await import(
  "../tests/connect_fixture.ts"
);
const { down } = await import("./lab.ts");

const ROUNDS = Number(argValue("rounds") ?? 5);
const log = (s: string) => console.error(`bench_resume: ${s}`);

interface Round {
  noticedMs: number;
  firstByteMs: number;
  pauseMs: number;
  equal: boolean;
}

async function round(): Promise<Round> {
  const client = resumeEcho(20, 10, { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 700));
  const { noticedMs, upAt } = await cutLink(1_000);
  const r = await client;
  if (r.code !== 0) throw new Error(`the echo client failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout);
  return { noticedMs, firstByteMs: out.firstAfterGapAt - upAt, pauseMs: out.maxGapMs, equal: out.equal };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(teardown: Teardown): Promise<number> {
  requireRoot();
  const startedAt = new Date().toISOString();
  teardown.add("lab", () => down(LAB));
  await down(LAB); // nothing left from an earlier, interrupted run
  const manager = await startLabManager();
  teardown.add("manager", () => manager.stop());
  teardown.add("daemon", () => forceQuit());
  teardown.add("link", () => setWorkstationLink("up"));
  const c = await tp(["connect", "--manager-url", MANAGER_URL]);
  if (c.code !== 0) throw new Error(`tp connect: ${c.stderr}`);
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const r = await round();
    log(
      `round ${i + 1}: noticed ${r.noticedMs.toFixed(0)} ms, first byte ${r.firstByteMs} ms after the link ` +
        `came back, echo ${r.equal ? "intact" : "DIFFERS"}`,
    );
    rounds.push(r);
  }
  const resumes = JSON.parse((await tp(["status", "-o", "json"])).stdout).manager.resumes;
  const first = rounds.map((r) => r.firstByteMs), noticed = rounds.map((r) => r.noticedMs);
  const row = (name: string, xs: number[]) =>
    console.log(
      `| ${name.padEnd(50)} | ${median(xs).toFixed(0).padStart(6)} | ` +
        `${Math.min(...xs).toFixed(0).padStart(5)} | ${Math.max(...xs).toFixed(0).padStart(5)} |`,
    );
  console.log(`| ${`scripts/bench_resume.ts (${ROUNDS} rounds)`.padEnd(50)} | median |   min |   max |`);
  console.log(`| ${"-".repeat(50)} | -----: | ----: | ----: |`);
  row("link down to tp noticing, ms", noticed);
  row("link back to the first byte on an open connection, ms", first);
  console.log(
    `resumes: ${resumes}; echoes intact: ${rounds.filter((r) => r.equal).length} of ${ROUNDS}; ` +
      `target: under 1000 ms: ${median(first) < 1000 ? "met" : "NOT met"}`,
  );
  log(`wrote ${await writeReport("resume", startedAt, { startedAt, rounds, resumes })}`);
  return rounds.some((r) => !r.equal) ? 1 : 0;
}

if (import.meta.main) await runBench("bench_resume", main);
