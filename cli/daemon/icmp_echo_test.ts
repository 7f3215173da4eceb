import assert from "node:assert/strict";
import { buildIcmpPacket, classify, ipFromString, PacketInfo } from "../../net/wire/mod.ts";
import { IcmpEchoHook, MAX_IN_FLIGHT } from "./icmp_echo.ts";

function echoRequest(src: string, dst: string, ident: number, seqNo: number, data: number[]): Uint8Array {
  const out = new Uint8Array(200);
  const ip = { src: ipFromString(src), dst: ipFromString(dst) } as never;
  return out.slice(0, buildIcmpPacket(out, ip, { kind: "echoRequest", ident, seqNo, data: Uint8Array.from(data) }));
}

function inspect(hook: IcmpEchoHook, packet: Uint8Array) {
  const info = new PacketInfo();
  assert.equal(classify(packet, info), null);
  return hook.inspect(packet, info);
}

for (const [app, pinged] of [["198.18.1.1", "198.19.0.10"], ["2001:db8:1::1", "2001:db8:5::10"]]) {
  Deno.test(`IcmpEchoHook answers an echo request to ${pinged} with the manager's reply, the request's id and sequence`, async () => {
    const injected: Uint8Array[] = [];
    const asked: string[] = [];
    const hook = new IcmpEchoHook(async (dst, data) => {
      asked.push(`${dst} ${[...data]}`);
      return await Promise.resolve({ reply: data, unavailable: "" });
    }, (p) => injected.push(p.slice()));
    assert.equal(inspect(hook, echoRequest(app!, pinged!, 0x1234, 7, [1, 2, 3])), "drop-silently");
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(asked, [`${pinged} 1,2,3`]);
    assert.equal(injected.length, 1);
    const info = new PacketInfo();
    assert.equal(classify(injected[0]!, info), null, "the reply's checksums hold");
    const reply = injected[0]!;
    const off = info.transportOffset;
    assert.equal(info.icmpType, info.version === 4 ? 0 : 129);
    assert.deepEqual([...reply.subarray(off + 4, off + 8)], [0x12, 0x34, 0, 7]);
    assert.deepEqual([...reply.subarray(info.payloadOffset, info.payloadEnd)], [1, 2, 3]);
    assert.deepEqual(info.srcAddress(reply), ipFromString(pinged!));
    assert.deepEqual(info.dstAddress(reply), ipFromString(app!));
    assert.deepEqual({ ...hook.stats }, { requests: 1, replies: 1, unanswered: 0, dropped: 0, unavailable: "" });
  });
}

Deno.test("IcmpEchoHook injects nothing without a reply, drops past MAX_IN_FLIGHT, and logs once that the manager cannot ping", async () => {
  const waiting: (() => void)[] = [];
  const logged: string[] = [];
  const hook = new IcmpEchoHook(
    () => new Promise((r) => waiting.push(() => r({ reply: null, unavailable: "not permitted" }))),
    () => assert.fail("nothing to inject"),
    (l) => logged.push(l),
  );
  for (let i = 0; i <= MAX_IN_FLIGHT; i++) inspect(hook, echoRequest("198.18.1.1", "198.19.0.10", 1, i, []));
  assert.equal(waiting.length, MAX_IN_FLIGHT);
  assert.equal(hook.stats.dropped, 1);
  for (const w of waiting) w();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(hook.stats.unanswered, MAX_IN_FLIGHT);
  assert.equal(hook.stats.unavailable, "not permitted");
  assert.deepEqual(logged, ["ping: the traffic-manager cannot send ICMP echo: not permitted"]);
  const udp = new Uint8Array(28);
  udp.set([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 1, 1, 198, 19, 0, 10, 0, 1, 0, 2, 0, 8, 0, 0]);
  const info = new PacketInfo();
  assert.equal(classify(udp, info, { verifyChecksums: false }), null);
  assert.equal(hook.inspect(udp, info), "accept", "other packets go on to the router");
});
