import assert from "node:assert/strict";
import { Connection, type Stream, type Transport } from "./connection.ts";
import { ErrorCode, Flag, frame, FrameType, settingsFrame } from "./frame.ts";
import { type HeaderList, HpackEncoder } from "./hpack.ts";
import { checkRequest, checkResponse, checkTrailers, contentLength } from "./fields.ts";
import { concat } from "../../base/bytes.ts";

Deno.test("checkRequest() takes a plain GET and CONNECT, and names what makes others malformed", () => {
  const get: HeaderList = [[":method", "GET"], [":scheme", "https"], [":path", "/"], ["te", "trailers"]];
  assert.equal(checkRequest(get), undefined);
  assert.equal(checkRequest([[":method", "CONNECT"], [":authority", "a:443"]]), undefined);
  assert.match(checkRequest([...get, ["Host", "x"]])!, /not lowercase/);
  assert.match(checkRequest([...get, ["transfer-encoding", "chunked"]])!, /connection-specific/);
  assert.match(checkRequest([...get, ["x", " padded"]])!, /whitespace/);
  assert.match(checkRequest([[":method", "GET"], [":path", "/"]])!, /without :scheme/);
});

Deno.test("checkResponse() wants :status first and three digits; checkTrailers() no pseudo-header", () => {
  assert.equal(checkResponse([[":status", "200"], ["content-type", "a/b"]]), undefined);
  assert.match(checkResponse([["content-type", "a/b"]])!, /without :status/);
  assert.match(checkResponse([[":status", "20"]])!, /three digits/);
  assert.match(checkResponse([[":status", "200"], [":path", "/"]])!, /not a response's/);
  assert.match(checkTrailers([[":status", "200"]])!, /in trailers/);
});

Deno.test("contentLength() reads one value or equal repeats, and null for anything else", () => {
  assert.equal(contentLength([]), undefined);
  assert.equal(contentLength([["content-length", "12"]]), 12);
  assert.equal(contentLength([["content-length", "12, 12"]]), 12);
  assert.equal(contentLength([["content-length", "12"], ["content-length", "13"]]), null);
  assert.equal(contentLength([["content-length", "-1"]]), null);
});

/** Test double: a transport that drops what the client writes (the test plays the server by hand). */
class NullTransport implements Transport {
  readonly buffered = 0;
  write(_bytes: Uint8Array): void {}
  close(): void {}
}

const enc = new HpackEncoder();
const responseFrames = (id: number, headers: HeaderList, body?: string, trailers?: HeaderList): Uint8Array[] => {
  const out = [
    frame(
      FrameType.HEADERS,
      Flag.END_HEADERS | (body === undefined && !trailers ? Flag.END_STREAM : 0),
      id,
      enc.encode(headers),
    ),
  ];
  if (body !== undefined) {
    out.push(frame(FrameType.DATA, trailers ? 0 : Flag.END_STREAM, id, new TextEncoder().encode(body)));
  }
  if (trailers) out.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, enc.encode(trailers)));
  return out;
};

Deno.test("a client fails only the stream whose response is malformed, with PROTOCOL_ERROR; the others complete", async () => {
  const c = new Connection("client", new NullTransport());
  const req: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/"]];
  const cases: [string, Uint8Array[]][] = [
    ["no :status", responseFrames(1, [["content-type", "a/b"]], "x")],
    ["a request pseudo-header", responseFrames(3, [[":status", "200"], [":path", "/"]], "x")],
    ["a connection-specific field", responseFrames(5, [[":status", "200"], ["connection", "close"]], "x")],
    ["content-length that lies", responseFrames(7, [[":status", "200"], ["content-length", "5"]], "x")],
    ["a pseudo-header in trailers", responseFrames(9, [[":status", "200"]], "x", [[":status", "200"]])],
    ["fine", responseFrames(11, [[":status", "200"], ["content-length", "1"]], "x", [["grpc-status", "0"]])],
  ];
  const closes = cases.map(() => Promise.withResolvers<number>());
  cases.forEach((_, i) => {
    const s: Stream = c.request(req, true);
    s.onClose = (code) => closes[i]!.resolve(code);
  });
  c.receive(concat([settingsFrame([]), frame(FrameType.SETTINGS, Flag.ACK, 0), ...cases.flatMap(([, f]) => f)]));
  const codes = await Promise.all(closes.map((p) => p.promise));
  assert.deepEqual(
    Object.fromEntries(cases.map(([what], i) => [what, codes[i]])),
    Object.fromEntries(cases.map(([what]) => [what, what === "fine" ? 0 : ErrorCode.PROTOCOL_ERROR])),
  );
  assert.equal(c.counters.malformed, 5);
  assert.equal(c.usable, true);
  c.destroy();
});
