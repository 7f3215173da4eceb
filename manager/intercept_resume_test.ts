/**
 * An agent's stream as the far end of a resumable stream (`agentEnd`), on the manager's own request reader and
 * response queue (`_streams.ts`), fed and read here: what the resumable stream hears of each agent frame, that a
 * paused far end reads nothing (flow control then holds the agent), and what the agent receives.
 */
import assert from "node:assert/strict";
import { Deframer, encodeFrame, Status } from "../proto/grpc_web.ts";
import { decodeTunnelFrame, encodeTunnelFrame, type TunnelFrame } from "../proto/messages.ts";
import { MessageReader, ResponseFrames } from "./_streams.ts";
import { agentEnd } from "./intercept_resume.ts";
import { decodeTunnelMessage } from "./tunnel.ts";

function agentStream() {
  let body!: ReadableStreamDefaultController<Uint8Array>;
  const reader = new MessageReader(new ReadableStream({ start: (c) => void (body = c) }), 1 << 20);
  const out = new ResponseFrames(1 << 20);
  const events: string[] = [];
  const far = agentEnd({ reader, out, name: "agent" }, decodeTunnelMessage);
  far.start({
    data: (c) => events.push(`data ${new TextDecoder().decode(c)}`),
    end: () => events.push("end"),
    error: (reason) => events.push(`error ${reason}`),
    close: () => events.push("close"),
  });
  const send = (f: TunnelFrame) => body.enqueue(encodeFrame(encodeTunnelFrame(f)));
  const data = (s: string) => send({ kind: "data", data: new TextEncoder().encode(s) });
  /** What the agent received so far: frames as kinds (data with its text), and the trailers' status. */
  const received = async (): Promise<string[]> => {
    const d = new Deframer(1 << 20);
    const r = out.body.getReader();
    const got: string[] = [];
    for (;;) {
      const c = await Promise.race([r.read(), new Promise<null>((res) => setTimeout(() => res(null), 20))]);
      if (!c || c.done) break;
      d.push(c.value);
    }
    r.releaseLock();
    for (let f = d.next(); f; f = d.next()) {
      if (f.trailers) got.push(`trailers ${new TextDecoder().decode(f.message).match(/grpc-status:\s*(\d+)/)?.[1]}`);
      else {
        const t = decodeTunnelFrame(f.message);
        got.push(t.kind === "data" ? `data ${new TextDecoder().decode(t.data)}` : t.kind);
      }
    }
    return got;
  };
  return { far, events, send, data, received, endBody: () => body.close() };
}

const ticks = () => new Promise((r) => setTimeout(r, 10));

Deno.test("agentEnd: data in order, keepalives answered, the agent's FIN once (also when its body ends after it)", async () => {
  const a = agentStream();
  a.data("one");
  a.send({ kind: "keepalive" });
  a.data("two");
  a.send({ kind: "fin" });
  a.endBody();
  await ticks();
  assert.deepEqual(a.events, ["data one", "data two", "end"]);
  a.far.write(new TextEncoder().encode("to the agent"));
  a.far.end();
  a.far.destroy();
  assert.deepEqual(await a.received(), ["keepalive", "data to the agent", "fin", `trailers ${Status.OK}`]);
});

Deno.test("agentEnd: paused, it reads nothing (the agent's frames wait); resumed, it goes on", async () => {
  const a = agentStream();
  a.data("before");
  await ticks();
  a.far.pause();
  a.data("while paused");
  await ticks();
  assert.deepEqual(a.events, ["data before"], "nothing read while paused");
  a.far.resume();
  await ticks();
  assert.deepEqual(a.events, ["data before", "data while paused"]);
});

Deno.test("agentEnd: the agent's reset and data after its FIN end the stream with a reason; reset() tells the agent", async () => {
  const a = agentStream();
  a.send({ kind: "reset", reason: "client went away" });
  await ticks();
  assert.deepEqual(a.events, ["error agent reset: client went away"]);

  const b = agentStream();
  b.send({ kind: "fin" });
  b.data("late");
  await ticks();
  assert.deepEqual(b.events, ["end", "error the agent sent data after its FIN"]);
  b.far.reset("the workstation did not come back");
  b.far.reset("twice"); // once only
  assert.deepEqual(await b.received(), ["reset", `trailers ${Status.OK}`]);

  const c = agentStream();
  c.endBody(); // the agent's request side ended without a FIN frame: its FIN
  await ticks();
  assert.deepEqual(c.events, ["end"]);
});
