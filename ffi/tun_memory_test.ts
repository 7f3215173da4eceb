import assert from "node:assert/strict";
import { MemoryTun } from "./tun_memory.ts";

Deno.test("MemoryTun read() returns injected packets in order, at most batchSize at a time", async () => {
  const tun = new MemoryTun({ batchSize: 2 });
  tun.inject(new Uint8Array([0x45, 1]), new Uint8Array([0x45, 2]), new Uint8Array([0x45, 3]));
  assert.deepEqual((await tun.read()).map((p) => p[1]), [1, 2]);
  assert.deepEqual((await tun.read()).map((p) => p[1]), [3]);
  assert.equal(tun.stats.readPackets, 3);
  tun.close();
});

Deno.test("MemoryTun read() waits for a packet and resolves to [] when closed", async () => {
  const tun = new MemoryTun();
  const first = tun.read();
  setTimeout(() => tun.inject(new Uint8Array([0x60])), 5);
  assert.equal((await first).length, 1);
  const pending = tun.read();
  setTimeout(() => tun.close(), 5);
  assert.deepEqual(await pending, []);
  assert.deepEqual(await tun.read(), []);
});

Deno.test("MemoryTun write() queues copies and counts packets over the MTU as drops", async () => {
  const tun = new MemoryTun({ mtu: 100 });
  const p = new Uint8Array(20).fill(7);
  assert.equal(tun.write([p, new Uint8Array(101)]), 1);
  p.fill(0);
  const [got] = await tun.waitWritten(1);
  assert.equal(got?.[0], 7);
  assert.equal(tun.stats.writeDrops, 1);
  await assert.rejects(tun.waitWritten(1, 10), /waited 10 ms for 1 written packets, got 0/);
  tun.close();
  assert.throws(() => tun.write([p]), TypeError);
});

Deno.test("MemoryTun rejects a second concurrent read()", async () => {
  const tun = new MemoryTun();
  const first = tun.read();
  await assert.rejects(tun.read(), TypeError);
  tun.close();
  assert.deepEqual(await first, []);
});
