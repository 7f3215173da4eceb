import assert from "node:assert/strict";
import { frameTcp, TcpDeframer } from "./tcp_framing.ts";
import { query } from "./_test_util.ts";

Deno.test("frameTcp() prefixes the 16-bit length and refuses a message over 65,535 bytes", () => {
  assert.deepEqual(frameTcp(Uint8Array.from([1, 2, 3])), Uint8Array.from([0, 3, 1, 2, 3]));
  assert.throws(() => frameTcp(new Uint8Array(65536)), /65536 bytes/);
});

Deno.test("TcpDeframer returns pipelined messages whatever the chunk boundaries", () => {
  const msgs = [query("a.x"), query("echo.default", "AAAA"), query("b", "SRV", { udpSize: 1232 })];
  const stream = Uint8Array.from(msgs.flatMap((m) => [...frameTcp(m)]));
  for (const size of [1, 2, 3, 7, 50, stream.length]) {
    const d = new TcpDeframer();
    const got: Uint8Array[] = [];
    for (let o = 0; o < stream.length; o += size) got.push(...d.push(stream.subarray(o, o + size)));
    assert.deepEqual(got, msgs, `chunks of ${size}`);
    assert.equal(d.buffered, 0);
  }
});

Deno.test("TcpDeframer marks the stream broken on a zero length", () => {
  const d = new TcpDeframer();
  assert.deepEqual(d.push(Uint8Array.from([0, 1, 9, 0, 0, 0, 1])), [Uint8Array.from([9])]);
  assert.equal(d.broken, true);
  assert.deepEqual(d.push(frameTcp(query("x"))), []);
});
