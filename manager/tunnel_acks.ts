/**
 * The TunnelAcks method: per session, the acknowledgements of its resumable streams both ways (`tunnel_resume.ts`),
 * on a stream of their own, so that no ack waits behind data that waits for it. The workstation opens one per
 * connection; its first message names the session. Acks are cumulative, so one lost with a broken connection costs
 * nothing: the resume exchange counts again.
 *
 * Outbound acks are batched per session (one message per tick); while the session has no ack stream, or leaves
 * MAX_QUEUED bytes of acks unread, the latest ack of each stream waits (one number per stream: bounded), and a new ack
 * stream first hears where every stream of its session stands.
 */
import { GrpcError, Status, statusName } from "../proto/grpc_web.ts";
import { codecs } from "../proto/messages.ts";
import type { FrameSink, MessageSource } from "./_streams.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Session } from "./sessions.ts";
import type { ResumableTcpStream } from "./tunnel_resume.ts";

const MAX_QUEUED = 1 << 20;

export interface AckHost {
  logger: Logger;
  metrics: Metrics;
  session(id: string): Session | undefined;
  /** Resumable streams by `sessionId/streamId`. */
  resumable: Map<string, ResumableTcpStream>;
}

export class TunnelAckService {
  readonly #host: AckHost;
  /** The ack stream of each session (the latest one a workstation opened). */
  readonly #sinks = new Map<string, FrameSink>();
  /** Acks waiting for the end of the tick, per session: stream id -> bytes received. */
  readonly #pending = new Map<string, Map<string, number>>();

  constructor(host: AckHost) {
    this.#host = host;
  }

  /** Queues an ack to the workstation of `sessionId` for one of its streams. */
  send(sessionId: string, streamId: string, received: number): void {
    let batch = this.#pending.get(sessionId);
    if (!batch) {
      batch = new Map();
      this.#pending.set(sessionId, batch);
      queueMicrotask(() => this.#flush(sessionId));
    }
    batch.set(streamId, received);
  }

  #flush(sessionId: string): void {
    const batch = this.#pending.get(sessionId);
    const sink = this.#sinks.get(sessionId);
    if (!batch || !sink || sink.closed) return; // they wait for the session's next ack stream
    if (sink.queued > MAX_QUEUED) {
      void sink.ready().then(() => this.#flush(sessionId));
      return;
    }
    this.#pending.delete(sessionId);
    const acks = [...batch].map(([streamId, received]) => ({ streamId, received }));
    sink.writeMessage(codecs.TunnelAcks.encode({ sessionId: "", acks }));
  }

  /** Forgets what waits for a session that ended. */
  sessionEnded(sessionId: string): void {
    this.#pending.delete(sessionId);
  }

  /** Runs one TunnelAcks call to its end. Never throws. */
  async serve(reader: MessageSource, out: FrameSink): Promise<void> {
    let sessionId = "";
    let code: Status = Status.OK, message = "";
    try {
      const first = await reader.next();
      if (first === null) throw new GrpcError(Status.INVALID_ARGUMENT, "TunnelAcks ended before naming its session");
      const hello = decode(first);
      const session = this.#host.session(hello.sessionId);
      if (!session || session.kind !== "client") {
        throw new GrpcError(Status.NOT_FOUND, "No such session (expired or departed?)");
      }
      sessionId = session.id;
      this.#sinks.get(sessionId)?.end(Status.OK, "another TunnelAcks stream took over");
      this.#sinks.set(sessionId, out);
      // Where every stream of the session stands: acks sent while it had no ack stream were never heard.
      const prefix = `${sessionId}/`;
      for (const [key, rs] of this.#host.resumable) {
        if (key.startsWith(prefix)) this.send(sessionId, key.slice(prefix.length), rs.received);
      }
      this.#flush(sessionId);
      this.#take(sessionId, hello);
      for (let m = await reader.next(); m !== null; m = await reader.next()) this.#take(sessionId, decode(m));
    } catch (e) {
      if (e instanceof GrpcError) [code, message] = [e.code, e.details];
      else [code, message] = [Status.CANCELLED, (e as Error).message];
      if (code !== Status.CANCELLED) {
        this.#host.logger.warn("request failed", { method: "TunnelAcks", status: statusName(code), reason: message });
      }
    } finally {
      reader.cancel();
      if (this.#sinks.get(sessionId) === out) this.#sinks.delete(sessionId);
      this.#host.metrics.requests.add({ method: "TunnelAcks", status: statusName(code) }, 1);
      out.end(code, message);
    }
  }

  /** Applies a workstation's acks; one for bytes never sent resets that stream (the workstation is confused). */
  #take(sessionId: string, m: { acks: { streamId: string; received: number }[] }): void {
    for (const a of m.acks) {
      const rs = this.#host.resumable.get(`${sessionId}/${a.streamId}`);
      if (rs && !rs.acknowledge(a.received)) rs.reset(`acknowledged byte ${a.received}, which was never sent`);
    }
  }
}

function decode(m: Uint8Array) {
  try {
    return codecs.TunnelAcks.decode(m);
  } catch (e) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `Cannot decode TunnelAcks: ${(e as Error).message}`);
  }
}
