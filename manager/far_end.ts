/**
 * The far end of a resumable stream (`tunnel_resume.ts`): what the workstation's bytes go to and come from, and what
 * outlives the workstation's connection. For an outbound stream it is the destination's socket (`socketEnd`); for an
 * intercepted connection, the agent's AgentTunnel stream (`intercept_resume.ts`).
 */
import type net from "node:net";
import { drainOrClose } from "../proto/socket_pipe.ts";
import type { IdleItem } from "./idle.ts";

/** What a far end tells its stream, once started. */
export interface FarEvents {
  /** Payload, each chunk a buffer of its own (the stream keeps it as is). */
  data(chunk: Uint8Array): void;
  /** Its FIN. */
  end(): void;
  /** It failed or was reset: the stream resets, with this reason. */
  error(reason: string): void;
  /** It closed: a reset, unless both directions had ended. */
  close(): void;
}

export interface FarEnd {
  readonly kind: "far-end";
  /** Starts delivering events (once). */
  start(events: FarEvents): void;
  /** Writes payload; false when the caller should wait for `drained()`. */
  write(data: Uint8Array): boolean;
  /** Resolves when writing may go on (or the far end is gone). */
  drained(): Promise<void>;
  /** Bytes written and not yet taken. */
  readonly writableLength: number;
  /** Half-closes (FIN). */
  end(): void;
  /** Aborts it (a TCP RST; a reset frame to an agent), with this reason. */
  reset(reason: string): void;
  /** Lets it go once the stream finished (both directions ended) or was reset. */
  destroy(): void;
  /** Stops and starts delivering data (flow control holds the far end meanwhile). */
  pause(): void;
  resume(): void;
}

/** A destination's socket as a far end. */
export function socketEnd(sock: net.Socket): FarEnd {
  return {
    kind: "far-end",
    start(ev) {
      sock.on("data", (chunk: Uint8Array) => ev.data(chunk));
      sock.on("end", () => ev.end());
      sock.on("error", (e: Error & { code?: string }) => {
        ev.error(e.code === "ECONNRESET" ? "destination reset the connection" : `destination error: ${e.message}`);
      });
      sock.on("close", () => ev.close());
    },
    write: (data) => sock.write(data),
    drained: () => drainOrClose(sock),
    get writableLength() {
      return sock.writableLength;
    },
    end: () => void sock.end(),
    reset: () => void sock.resetAndDestroy(),
    destroy: () => {
      if (!sock.destroyed) sock.destroy();
    },
    pause: () => void sock.pause(),
    resume: () => void sock.resume(),
  };
}

/** An idle timer that never fires (a stream without an idle timeout). */
export const noIdle: IdleItem = { touch() {}, cancel() {} };
