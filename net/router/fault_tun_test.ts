import assert from "node:assert/strict";
import { MemoryTun } from "../../ffi/tun_memory.ts";
import { FaultyTun } from "./fault_tun.ts";

function numbered(n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => new Uint8Array([0x45, i >> 8, i & 0xff]));
}

async function readAll(dev: FaultyTun, count: number, ms: number): Promise<number[]> {
  const got: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until && got.length < count) {
    const next = dev.read();
    const t = new Promise<Uint8Array[]>((r) => setTimeout(() => r([]), Math.max(1, until - performance.now())));
    const batch = await Promise.race([next, t]);
    for (const p of batch) got.push((p[1]! << 8) | p[2]!);
    if (batch.length === 0) break;
  }
  return got;
}

Deno.test("FaultyTun passes every packet in order when no fault is asked for", async () => {
  const mem = new MemoryTun();
  const dev = new FaultyTun(mem, { seed: 1 });
  mem.inject(...numbered(300));
  const got = await readAll(dev, 300, 2000);
  assert.deepEqual(got, [...Array(300).keys()]);
  dev.write(numbered(5));
  assert.deepEqual(mem.takeWritten().map((p) => p[2]), [0, 1, 2, 3, 4]);
  dev.close();
  assert.deepEqual(await dev.read(), []);
});

Deno.test("FaultyTun loses, duplicates and reorders about the asked share, the same way for the same seed", async () => {
  const run = async (seed: number) => {
    const mem = new MemoryTun({ batchSize: 1000 });
    const dev = new FaultyTun(mem, { seed, loss: 0.05, duplicate: 0.05, reorder: 0.05, delayMs: 2 });
    mem.inject(...numbered(2000));
    const got = await readAll(dev, 2000, 1000);
    const faults = { ...dev.faults.inbound };
    dev.close();
    await dev.read();
    return { got, faults };
  };
  const a = await run(42);
  const b = await run(42);
  assert.deepEqual(a.faults, b.faults, "same seed, same faults");
  for (const [name, n] of Object.entries(a.faults)) assert.ok(n > 40 && n < 170, `${name}: ${n} of 2000`);
  assert.equal(a.got.length, 2000 - a.faults.lost + a.faults.duplicated);
  const outOfOrder = a.got.filter((x, i) => i > 0 && x < a.got[i - 1]!).length;
  assert.ok(outOfOrder > 0, "some packets were overtaken");
  const c = await run(43);
  assert.notDeepEqual(c.faults, a.faults, "another seed, other faults");
});

Deno.test("FaultyTun delays packets both ways", async () => {
  const mem = new MemoryTun();
  const dev = new FaultyTun(mem, { seed: 7, delayMs: 30 });
  const t0 = performance.now();
  mem.inject(...numbered(1));
  await dev.read();
  assert.ok(performance.now() - t0 >= 29, "inbound delayed");
  dev.write(numbered(1));
  assert.equal(mem.takeWritten().length, 0, "outbound held");
  const out = await mem.waitWritten(1, 1000);
  assert.equal(out.length, 1);
  dev.close();
  await dev.read();
});
