import assert from "node:assert/strict";
import { attributes, MessageBuilder, messages, NLM_F_ACK_TLVS, NLM_F_CAPPED, parseError } from "./_netlink_wire.ts";

Deno.test("MessageBuilder encodes header, fixed part and nested attributes that attributes() reads back", () => {
  const msg = new MessageBuilder(16, 0x5).fixed(new Uint8Array(16)).string(3, "tp0").begin(26).begin(10).u8(8, 1).end()
    .end().finish(42);
  // 16 header + 16 ifinfomsg + 8 (IFLA_IFNAME "tp0\0") + 4 + 4 + 8 (AF_SPEC > AF_INET6 > u8 padded)
  assert.equal(msg.length, 56);
  const [m] = [...messages(msg)];
  assert.deepEqual([m?.type, m?.flags, m?.seq], [16, 0x5, 42]);
  const attrs = attributes(m!.body.subarray(16));
  assert.deepEqual([...attrs.get(3)!], [0x74, 0x70, 0x30, 0]);
  const inet6 = attributes(attributes(attrs.get(26)!).get(10)!);
  assert.deepEqual([...inet6.get(8)!], [1]);
});

Deno.test("parseError() reads the errno and the kernel's extended-ack message", () => {
  const body = new Uint8Array(4 + 16 + 12);
  const v = new DataView(body.buffer);
  v.setInt32(0, -17, true);
  v.setUint32(4, 16, true); // the capped original header
  v.setUint16(20, 12, true); // NLMSGERR_ATTR_MSG "bad\0" + pad
  v.setUint16(22, 1, true);
  body.set(new TextEncoder().encode("bad"), 24);
  const r = parseError({ type: 2, flags: NLM_F_CAPPED | NLM_F_ACK_TLVS, seq: 1, body });
  assert.deepEqual(r, { errno: 17, kernelMessage: "bad" });
  assert.deepEqual(parseError({ type: 2, flags: 0, seq: 1, body: new Uint8Array(20) }), {
    errno: 0,
    kernelMessage: undefined,
  });
});

Deno.test("messages() stops at a length that runs past the datagram", () => {
  const a = new MessageBuilder(3, 0).finish(1);
  const broken = new Uint8Array(a.length + 16);
  broken.set(a);
  new DataView(broken.buffer).setUint32(a.length, 999, true);
  assert.equal([...messages(broken)].length, 1);
});
