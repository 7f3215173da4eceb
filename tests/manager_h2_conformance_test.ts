/**
 * RFC 9113 rules (issue 20, the cases h2spec found tp's manager breaking), each written from the RFC as raw frames
 * from the project's own encoder against the real manager over TCP: the exact frame that comes back (GOAWAY or
 * RST_STREAM and its code), and, for a stream error, that another stream on the same connection is still served.
 * h2spec itself (not packaged here) is a final check by hand; the README says how it was run and what it gave.
 */
import assert from "node:assert/strict";
import { concat } from "../base/bytes.ts";
import { ErrorCode, errorName, Flag, frame, FrameType, rstStreamFrame, windowUpdateFrame } from "../proto/h2/frame.ts";
import type { HeaderList } from "../proto/h2/hpack.ts";
import { GET_HEALTHZ, header, RawH2 } from "./h2_raw.ts";
import { type RunningManager, startManager } from "./manager_fixture.ts";

const te = new TextEncoder();

async function withManager(body: (m: RunningManager, a: RawH2) => Promise<void>): Promise<void> {
  const m = await startManager({ token: "t0ken" });
  const a = await RawH2.connect(m.port);
  try {
    await body(m, a);
  } finally {
    await a.closed();
    await m.close();
  }
}

/** The code of the first RST_STREAM on `id` or GOAWAY that comes back. */
async function firstError(a: RawH2, id: number): Promise<string> {
  for (;;) {
    const f = await a.read(5000);
    if (!f) return "closed without GOAWAY";
    if (f.type === FrameType.GOAWAY) return `GOAWAY ${errorName(new DataView(f.payload.buffer).getUint32(4))}`;
    if (f.type === FrameType.RST_STREAM && f.streamId === id && new DataView(f.payload.buffer).getUint32(0) !== 0) {
      return `RST_STREAM ${errorName(new DataView(f.payload.buffer).getUint32(0))}`;
    }
  }
}

/** GET /healthz on `id` of the same connection answers 200. */
async function stillServes(a: RawH2, id: number): Promise<void> {
  await a.send(a.headers(id, GET_HEALTHZ, true));
  assert.equal(header((await a.response(id)).headers, ":status"), "200", "the connection's other streams go on");
}

Deno.test("a connection preface that is not HTTP/2's gets GOAWAY PROTOCOL_ERROR (RFC 9113 section 3.4)", async () => {
  await withManager(async (_m, a) => {
    await a.send(te.encode("INVALID CONNECTION PREFACE\r\n\r\n"));
    assert.equal(await firstError(a, 0), "GOAWAY PROTOCOL_ERROR");
  });
});

const malformed: [string, HeaderList][] = [
  ["a field name with uppercase letters", [...GET_HEALTHZ, ["X-TEST", "ok"]]],
  ["an unknown pseudo-header", [...GET_HEALTHZ, [":test", "ok"]]],
  ["a response pseudo-header (:status)", [...GET_HEALTHZ, [":status", "200"]]],
  ["a pseudo-header after a regular field", [[":method", "GET"], [":scheme", "http"], ["x-a", "b"], [":path", "/"]]],
  ["a connection-specific field", [...GET_HEALTHZ, ["connection", "keep-alive"]]],
  ["keep-alive", [...GET_HEALTHZ, ["keep-alive", "5"]]],
  ["TE other than trailers", [...GET_HEALTHZ, ["te", "trailers, deflate"]]],
  ["an empty :path", [[":method", "GET"], [":scheme", "http"], [":path", ""]]],
  ["no :method", [[":scheme", "http"], [":path", "/healthz"]]],
  ["no :scheme", [[":method", "GET"], [":path", "/healthz"]]],
  ["no :path", [[":method", "GET"], [":scheme", "http"]]],
  ["two :method", [[":method", "GET"], ...GET_HEALTHZ]],
  ["two :scheme", [[":scheme", "http"], ...GET_HEALTHZ]],
  ["two :path", [[":path", "/"], ...GET_HEALTHZ]],
  ["a value with a line feed", [...GET_HEALTHZ, ["x-a", "b\nc"]]],
];

for (const [what, headers] of malformed) {
  Deno.test(`a request with ${what} is reset with PROTOCOL_ERROR, the connection goes on (section 8.1.1)`, async () => {
    await withManager(async (m, a) => {
      await a.handshake();
      await a.send(a.headers(1, headers, true));
      assert.equal(await firstError(a, 1), "RST_STREAM PROTOCOL_ERROR");
      await stillServes(a, 3);
      assert.ok(!m.logger.lines.some((l) => l.msg === "request rejected"), "the handler never saw it");
    });
  });
}

Deno.test("a pseudo-header in trailers resets the stream with PROTOCOL_ERROR (section 8.1)", async () => {
  await withManager(async (_m, a) => {
    await a.handshake();
    await a.send(concat([a.headers(1, GET_HEALTHZ, false), a.headers(1, [[":method", "GET"]], true)]));
    assert.equal(await firstError(a, 1), "RST_STREAM PROTOCOL_ERROR");
    await stillServes(a, 3);
  });
});

Deno.test("content-length that the DATA do not add up to resets the stream with PROTOCOL_ERROR (section 8.1.1)", async () => {
  await withManager(async (_m, a) => {
    await a.handshake();
    const post: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/healthz"], ["content-length", "1"]];
    // More than declared, over two DATA frames; then less than declared, ended.
    await a.send(concat([
      a.headers(1, post, false),
      frame(FrameType.DATA, 0, 1, te.encode("t")),
      frame(FrameType.DATA, Flag.END_STREAM, 1, te.encode("est")),
    ]));
    assert.equal(await firstError(a, 1), "RST_STREAM PROTOCOL_ERROR");
    const five: HeaderList = [...post.slice(0, 3), ["content-length", "5"]];
    await a.send(concat([a.headers(3, five, false), frame(FrameType.DATA, Flag.END_STREAM, 3, te.encode("abc"))]));
    assert.equal(await firstError(a, 3), "RST_STREAM PROTOCOL_ERROR");
    await stillServes(a, 5);
  });
});

Deno.test("frames after the client's own RST_STREAM get RST_STREAM STREAM_CLOSED (section 5.1)", async () => {
  await withManager(async (_m, a) => {
    await a.handshake();
    await a.send(concat([
      a.headers(1, GET_HEALTHZ, false),
      rstStreamFrame(1, ErrorCode.CANCEL),
      frame(FrameType.DATA, Flag.END_STREAM, 1, te.encode("test")),
    ]));
    assert.equal(await firstError(a, 1), "RST_STREAM STREAM_CLOSED");
    await a.send(concat([a.headers(3, GET_HEALTHZ, false), rstStreamFrame(3, ErrorCode.CANCEL)]));
    await a.send(a.headers(3, GET_HEALTHZ, true));
    assert.equal(await firstError(a, 3), "RST_STREAM STREAM_CLOSED");
    await stillServes(a, 5);
  });
});

Deno.test("DATA or HEADERS on a stream that ended both ways get GOAWAY STREAM_CLOSED (section 5.1)", async () => {
  for (const late of ["DATA", "HEADERS"] as const) {
    await withManager(async (_m, a) => {
      await a.handshake();
      await a.send(a.headers(1, GET_HEALTHZ, true));
      await a.response(1);
      await a.send(
        late === "DATA" ? frame(FrameType.DATA, Flag.END_STREAM, 1, te.encode("x")) : a.headers(1, GET_HEALTHZ, true),
      );
      assert.equal(await firstError(a, 1), "GOAWAY STREAM_CLOSED");
    });
  }
});

Deno.test("a new stream with an id lower than one already opened gets GOAWAY PROTOCOL_ERROR (section 5.1.1)", async () => {
  await withManager(async (_m, a) => {
    await a.handshake();
    await a.send(a.headers(5, GET_HEALTHZ, true));
    await a.response(5);
    await a.send(a.headers(3, GET_HEALTHZ, true));
    assert.equal(await firstError(a, 3), "GOAWAY PROTOCOL_ERROR");
  });
});

Deno.test("HEADERS or PRIORITY making a stream depend on itself get RST_STREAM PROTOCOL_ERROR (section 5.3.1)", async () => {
  await withManager(async (_m, a) => {
    await a.handshake();
    const self = (id: number) => new Uint8Array([0, 0, 0, id, 16]); // exclusive bit 0, dependency id, weight
    const block = a.encoder.encode(GET_HEALTHZ);
    await a.send(
      frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM | Flag.PRIORITY, 1, concat([self(1), block])),
    );
    assert.equal(await firstError(a, 1), "RST_STREAM PROTOCOL_ERROR");
    await a.send(frame(FrameType.PRIORITY, 0, 3, self(3)));
    assert.equal(await firstError(a, 3), "RST_STREAM PROTOCOL_ERROR");
    await stillServes(a, 5);
  });
});

Deno.test("DATA that crosses the server's RST_STREAM NO_ERROR after a complete answer is ignored (section 5.1)", async () => {
  await withManager(async (_m, a) => {
    await a.handshake();
    await a.send(a.headers(1, GET_HEALTHZ, false));
    const r = await a.response(1);
    assert.equal(header(r.headers, ":status"), "200");
    await a.send(concat([frame(FrameType.DATA, Flag.END_STREAM, 1, te.encode("late")), windowUpdateFrame(1, 1)]));
    await stillServes(a, 3);
    const more = await a.read(200);
    assert.ok(!more || more.type !== FrameType.RST_STREAM, `no error for late frames: ${JSON.stringify(more)}`);
  });
});
