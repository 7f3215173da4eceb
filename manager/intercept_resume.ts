/**
 * A resumable intercepted connection: when the workstation's InterceptTunnel asked for it (TunnelOpen.resumable) and
 * its local app took the connection, the manager does not relay the agent's stream to the workstation's frame by
 * frame (`relay.ts`) but makes the agent's AgentTunnel the far end of a resumable stream (`tunnel_resume.ts`, as an
 * outbound stream's destination socket is): the workstation's leg acknowledges and keeps its bytes as an outbound
 * stream does, and when its connection breaks the agent's stream stays open, read into the kept buffer until that is
 * full (then it is not read, and HTTP/2 flow control holds the agent, and the agent the cluster's client), for the
 * resume grace. A resume (InterceptTunnel with TunnelOpen.resume) re-attaches; the grace's end resets the agent's
 * stream (the cluster's client gets a reset).
 */
import { Status } from "../proto/grpc_web.ts";
import { DialCode, encodeTunnelFrame, type TunnelFrame } from "../proto/messages.ts";
import type { ManagerConfig } from "./config.ts";
import type { FarEnd } from "./far_end.ts";
import type { Metrics } from "./metrics.ts";
import type { StreamEnd } from "./relay.ts";
import { decodeTunnelMessage } from "./tunnel.ts";
import {
  ACK_EVERY,
  DEFAULT_RESUME_BUFFER_BYTES,
  DEFAULT_RESUME_GRACE_MS,
  ResumableTcpStream,
} from "./tunnel_resume.ts";
import type { SessionBuffer } from "./session_buffer.ts";

/** The workstation's session a resumable stream belongs to: its id, and the budget its kept bytes count against. */
export interface HoldingSession {
  readonly id: string;
  readonly buffer: SessionBuffer;
}

const DATA_KEY = 0x0a;
const FIN = encodeTunnelFrame({ kind: "fin" });
const KEEPALIVE = encodeTunnelFrame({ kind: "keepalive" });

/**
 * An agent's AgentTunnel stream as a far end: its data frames are the payload, its FIN and reset frames end it, its
 * keepalives are answered; payload to it goes out as data frames. Reading pauses while the stream is paused.
 */
export function agentEnd(agent: StreamEnd, decode: (msg: Uint8Array) => TunnelFrame): FarEnd {
  let paused = false;
  let done = false;
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const stop = () => {
    done = true;
    agent.reader.cancel();
    wakeUp();
  };
  const read = async (ev: Parameters<FarEnd["start"]>[0]) => {
    let fin = false;
    try {
      for (;;) {
        while (paused && !done) await new Promise<void>((r) => (wake = r));
        if (done) return;
        const msg = await agent.reader.next();
        // A read under way when the pause came: its message waits for the resume (one message, bounded).
        while (paused && !done) await new Promise<void>((r) => (wake = r));
        if (done) return;
        if (msg === null) { // the agent ended its request side: a FIN if none came before
          if (!fin) ev.end();
          return;
        }
        const f = decode(msg);
        if (msg[0] === DATA_KEY && f.kind === "data") {
          if (fin) return ev.error("the agent sent data after its FIN");
          ev.data(f.data);
        } else if (f.kind === "keepalive") agent.out.writeMessage(KEEPALIVE);
        else if (f.kind === "fin") {
          if (!fin) ev.end();
          fin = true;
        } else if (f.kind === "reset") return ev.error(`agent reset: ${f.reason}`);
        else return ev.error(`Unexpected "${f.kind}" frame from the agent`);
      }
    } catch (e) {
      if (!done) ev.error(`agent gone: ${e instanceof Error ? e.message : e}`);
    }
  };
  return {
    kind: "far-end",
    start: (ev) => void read(ev),
    write: (data) => agent.out.writeData(data),
    drained: () => agent.out.ready(),
    get writableLength() {
      return agent.out.queued;
    },
    end: () => void agent.out.writeMessage(FIN),
    reset: (reason) => {
      if (done) return;
      agent.out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
      agent.out.end(Status.OK, reason);
      stop();
    },
    destroy: () => {
      if (done) return;
      agent.out.end(Status.OK);
      stop();
    },
    pause: () => void (paused = true),
    resume: () => {
      paused = false;
      wakeUp();
    },
  };
}

export interface InterceptResumeHost {
  config: ManagerConfig;
  metrics: Metrics;
  /** Resumable streams by `sessionId/streamId` (the workstation's session): where acks and resumes find them. */
  resumable: Map<string, ResumableTcpStream>;
  /** Sends a resumable stream's acks to its workstation (on the session's TunnelAcks stream). */
  sendAck(sessionId: string, streamId: string, received: number): void;
}

/**
 * Carries a joined intercepted connection whose workstation (`session`) asked for a resumable stream and
 * whose local app took it (`wsDial`, its ok dial frame, already read: it goes on to the agent). Tells the workstation
 * the stream's id (a dial frame of its own) and resolves once the stream is gone for good: finished, reset, or its
 * grace ended while the workstation was away. `signal` resets it (the agent's or the workstation's session ended).
 * A mount stream (`mount_resume.ts`) has no `wsDial`: there the agent's dial came first, and nothing goes back to it.
 */
export async function carryResumable(
  host: InterceptResumeHost,
  session: HoldingSession,
  agent: StreamEnd,
  ws: StreamEnd,
  wsDial: Uint8Array | undefined,
  signal: AbortSignal,
): Promise<void> {
  const { config, metrics } = host;
  const sessionId = session.id;
  const gone = Promise.withResolvers<void>();
  const key = () => `${sessionId}/${rs.id}`;
  const rs: ResumableTcpStream = new ResumableTcpStream(agentEnd(agent, decodeTunnelMessage), {
    graceMs: config.resumeGraceMs ?? DEFAULT_RESUME_GRACE_MS,
    bufferBytes: config.resumeBufferBytes ?? DEFAULT_RESUME_BUFFER_BYTES,
    idleTimeoutMs: 0, // as relayed connections: the agent's and the app's ends time out on their own
    metrics,
    // Its kept bytes count against the workstation's session budget, as an outbound stream's (session_buffer.ts).
    hold: session.buffer.hold(ACK_EVERY),
    countBytes: false,
    decode: decodeTunnelMessage,
    sendAck: (received) => host.sendAck(sessionId, rs.id, received),
    onGone: () => {
      host.resumable.delete(key());
      metrics.streamsResumable.add({}, -1);
      gone.resolve();
    },
  });
  host.resumable.set(key(), rs);
  metrics.streamsResumable.add({}, 1);
  const onAbort = () => rs.reset(String(signal.reason));
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  if (wsDial) agent.out.writeMessage(wsDial);
  ws.out.writeMessage(encodeTunnelFrame({ kind: "dial", dial: { code: DialCode.ok, message: "", streamId: rs.id } }));
  void rs.attach(ws.reader, ws.out, 0, false).then((o) => ws.out.end(o.code, o.message));
  try {
    await gone.promise;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * A workstation's InterceptTunnel that resumes (TunnelOpen.resume) a stream of its session after a reconnection:
 * re-attached, or reset when the stream is gone. Resolves when this call ends.
 */
export async function resumeIntercepted(
  host: InterceptResumeHost,
  sessionId: string,
  resume: { streamId: string; received: number },
  ws: StreamEnd,
): Promise<void> {
  const rs = host.resumable.get(`${sessionId}/${resume.streamId}`);
  if (!rs) {
    host.metrics.resumes.add({ result: "gone" }, 1);
    const reason = "the stream is gone: it ended, or its grace period did, while the workstation was away";
    ws.out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
    ws.reader.cancel();
    ws.out.end(Status.OK, reason);
    return;
  }
  host.metrics.resumes.add({ result: "resumed" }, 1);
  const o = await rs.attach(ws.reader, ws.out, resume.received, true);
  ws.out.end(o.code, o.message);
}
