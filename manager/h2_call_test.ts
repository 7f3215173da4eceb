import assert from "node:assert/strict";
import type { Stream } from "../proto/h2/connection.ts";
import type { HeaderList } from "../proto/h2/hpack.ts";
import { Status } from "../proto/grpc_web.ts";
import { H2Call } from "./h2_call.ts";

/** Test double: the few members of an HTTP/2 server stream a call uses, recording what the call sends, in order. */
function recordingStream(): { stream: Stream; sent: string[] } {
  const sent: string[] = [];
  const stream = {
    headers: [[":method", "POST"], [":path", "/tp.Manager/Tunnel"]] as HeaderList,
    sendEnded: false,
    bufferedAmount: 0,
    respond: (h: HeaderList, endStream: boolean) => sent.push(`headers ${h[0]![1]}${endStream ? " end" : ""}`),
    write: (b: Uint8Array) => sent.push(`data ${b.length}`),
    end: () => sent.push("end"),
  };
  return { stream: stream as unknown as Stream, sent };
}

Deno.test("frames() answers with the response headers at once", () => {
  const { stream, sent } = recordingStream();
  const call = new H2Call(stream);
  call.frames(1024);
  assert.deepEqual(sent, ["headers 200"]);
  assert.equal(call.responded, true);
});

Deno.test("frames() with lazyHeaders sends the headers with the first frame, in one flush with it", () => {
  const { stream, sent } = recordingStream();
  const call = new H2Call(stream);
  const out = call.frames(1024, { lazyHeaders: true });
  assert.deepEqual(sent, [], "nothing goes out before the first frame");
  assert.equal(call.responded, true, "the call counts as answered: a handler error resets the stream");
  out.writeMessage(new Uint8Array(3));
  out.writeMessage(new Uint8Array(4));
  assert.deepEqual(sent, ["headers 200", "data 8", "data 9"]);
});

Deno.test("frames() with lazyHeaders still sends the headers before trailers when no frame came", () => {
  const { stream, sent } = recordingStream();
  const out = new H2Call(stream).frames(1024, { lazyHeaders: true });
  out.end(Status.OK);
  assert.equal(sent[0], "headers 200");
  assert.equal(sent.at(-1), "end");
});
