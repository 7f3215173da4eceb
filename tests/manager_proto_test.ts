import assert from "node:assert/strict";
import fc from "fast-check";
import protobuf from "protobufjs";
import { embeddedModule } from "../proto/_embed.ts";
import { MANAGER_PROTO } from "../proto/_manager_proto.ts";
import { Deframer, encodeFrame, encodeTrailers, GrpcError, parseTrailers, Status } from "../proto/grpc_web.ts";
import { dataPayload, decodeTunnelFrame, encodeDataFrame, encodeTunnelFrame } from "../proto/messages.ts";
import { Sessions } from "../manager/sessions.ts";
import { AllowList, parseDuration, parseHostPort } from "../manager/config.ts";

Deno.test("proto/_manager_proto.ts embeds proto/manager.proto exactly (regenerate with proto/_embed.ts)", async () => {
  const text = await Deno.readTextFile(new URL("../proto/manager.proto", import.meta.url));
  assert.equal(MANAGER_PROTO, text);
  assert.match(embeddedModule(text), /export const MANAGER_PROTO = /);
});

Deno.test("a hand-coded data frame decodes with protobufjs, and protobufjs's data frame takes the fast path", () => {
  const type = protobuf.parse(MANAGER_PROTO).root.lookupType("tp.manager.v1.TunnelFrame");
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 70_000 }), (payload) => {
      const frame = encodeDataFrame([payload.subarray(0, 7), payload.subarray(7)], payload.length);
      const msg = frame.subarray(5);
      const viaPbjs = type.decode(msg) as unknown as { data: Uint8Array };
      assert.deepEqual(new Uint8Array(viaPbjs.data), payload);
      const pbjsBytes = type.encode(type.fromObject({ data: payload })).finish();
      if (payload.length > 0) assert.deepEqual(new Uint8Array(dataPayload(pbjsBytes)!), payload);
    }),
    { numRuns: 50 },
  );
});

Deno.test("control frames round-trip; bytes that are no TunnelFrame throw SyntaxError", () => {
  for (
    const f of [
      { kind: "fin" },
      { kind: "keepalive" },
      { kind: "reset", reason: "why" },
      { kind: "reset", reason: "refused", code: 2 },
      { kind: "dial", dial: { code: 4, message: "slow" } },
      { kind: "dial", dial: { code: 1, message: "", streamId: "s-1" } },
      { kind: "resumed", received: 131072 },
      {
        kind: "open",
        open: {
          sessionId: "x",
          protocol: 1,
          source: { ip: "10.0.0.1", port: 1 },
          destination: { ip: "10.0.0.2", port: 2 },
          connectionId: "",
          interceptId: "",
          resumable: true,
          resume: { streamId: "s-1", received: 42 },
        },
      },
    ] as const
  ) assert.deepEqual(decodeTunnelFrame(encodeTunnelFrame(f)), f);
  assert.throws(() => decodeTunnelFrame(new Uint8Array([0x12, 0xff, 0x01])), SyntaxError);
  assert.throws(() => decodeTunnelFrame(new Uint8Array([])), SyntaxError);
});

Deno.test("Deframer yields the same frames however the bytes are split", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), fc.array(fc.nat(400)), (msgs, cuts) => {
      const bytes = Uint8Array.from([...msgs.flatMap((m) => [...encodeFrame(m)]), ...encodeTrailers(Status.OK)]);
      const d = new Deframer(1000);
      const out: Uint8Array[] = [];
      let trailers: Map<string, string> | undefined;
      let o = 0;
      for (const c of [...cuts, bytes.length]) {
        const end = Math.min(bytes.length, o + c);
        d.push(bytes.subarray(o, end));
        o = end;
        for (let f = d.next(); f; f = d.next()) {
          if (f.trailers) trailers = parseTrailers(f.message);
          else out.push(new Uint8Array(f.message));
        }
      }
      assert.deepEqual(out, msgs.map((m) => new Uint8Array(m)));
      assert.equal(trailers?.get("grpc-status"), "0");
      assert.ok(d.atBoundary);
    }),
    { numRuns: 200 },
  );
});

Deno.test("Deframer rejects an oversized frame from its header, before buffering its body", () => {
  const d = new Deframer(100);
  d.push(new Uint8Array([0, 0, 0, 0, 101]));
  assert.throws(() => d.next(), (e) => e instanceof GrpcError && e.code === Status.RESOURCE_EXHAUSTED);
});

Deno.test("Sessions expire after the ttl without keepalives and abort their streams", () => {
  const s = new Sessions(1000, 2);
  const a = s.arrive("a", "default", 0)!;
  const b = s.arrive("b", "default", 0)!;
  assert.equal(s.arrive("c", "default", 0), undefined, "maxSessions");
  const aborted: string[] = [];
  a.streams.add({ abort: (r) => aborted.push(r) });
  assert.ok(s.touch(b.id, 900));
  assert.deepEqual(s.expire(1001).map((x) => x.id), [a.id]);
  assert.deepEqual(aborted, ["session expired"]);
  assert.equal(s.touch(a.id, 1002), false);
  assert.deepEqual(s.expire(1901).map((x) => x.id), [b.id]);
});

Deno.test("config parsers: host:port, durations, allow lists with IPv4-mapped IPv6", () => {
  assert.deepEqual(parseHostPort("[2001:db8::1]:8081"), { host: "2001:db8::1", port: 8081 });
  assert.deepEqual(parseHostPort("198.19.0.53", 53), { host: "198.19.0.53", port: 53 });
  assert.throws(() => parseHostPort("host:99999"), SyntaxError);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.throws(() => parseDuration("soon"), SyntaxError);
  const allow = new AllowList(["198.19.0.0/24", "2001:db8:6::/64"]);
  assert.ok(allow.allows("198.19.0.10"));
  assert.ok(allow.allows("::ffff:198.19.0.10"));
  assert.ok(allow.allows("2001:db8:6::10"));
  assert.ok(!allow.allows("198.18.0.1"));
  assert.ok(!allow.allows("not an ip"));
});
