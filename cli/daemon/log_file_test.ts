import assert from "node:assert/strict";
import { LogFile } from "./log_file.ts";

const at = () => new Date("2026-01-02T03:04:05.000Z");

Deno.test("LogFile writes timestamped lines at or above its level, and the level changes at run time", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = new LogFile(`${dir}/daemon.log`, { now: at });
    log.write("connected");
    log.write("tcp 1.2.3.4:5 -> 6.7.8.9:10", "debug");
    log.level = "debug";
    log.write("tcp 1.2.3.4:6 -> 6.7.8.9:10", "debug");
    log.level = "error";
    log.write("cleanup: x", "warn");
    log.write("error: y", "error");
    assert.equal(
      await Deno.readTextFile(`${dir}/daemon.log`),
      "2026-01-02T03:04:05.000Z info connected\n" +
        "2026-01-02T03:04:05.000Z debug tcp 1.2.3.4:6 -> 6.7.8.9:10\n" +
        "2026-01-02T03:04:05.000Z error error: y\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LogFile rotates to daemon.log.1 past its size, keeping one old file, counting what was there", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const line = (n: number) => `line ${n} ${"x".repeat(30)}`; // 70 bytes with timestamp and level
    await Deno.writeTextFile(`${dir}/daemon.log`, "y".repeat(100) + "\n"); // from an earlier daemon
    const log = new LogFile(`${dir}/daemon.log`, { now: at, maxBytes: 200 });
    for (let i = 1; i <= 7; i++) log.write(line(i));
    const current = await Deno.readTextFile(`${dir}/daemon.log`);
    const old = await Deno.readTextFile(`${dir}/daemon.log.1`);
    assert.ok(current.length <= 200 && old.length <= 200, `${current.length} ${old.length}`);
    assert.match(current, /line 7 /);
    assert.doesNotMatch(old + current, /yyyy|line 1 /, "the oldest lines are gone");
    assert.deepEqual(Array.from(Deno.readDirSync(dir), (e) => e.name).sort(), ["daemon.log", "daemon.log.1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
