/**
 * Carries one node:net TCP socket over a Tunnel, both ways: bytes with backpressure (a full tunnel pauses the
 * socket; a slow socket stops reading the tunnel, whose HTTP/2 window then closes), half-close (the socket's end
 * becomes the tunnel's fin, the tunnel's fin the socket's end) and resets (the peer's reset closes the socket with
 * a TCP RST; the socket's error resets the tunnel). The traffic-agent pipes the cluster's connections this way, and
 * the workstation the connections to its local app.
 */
import type net from "node:net";
import type { Tunnel } from "./tunnel.ts";

/** How a piped connection ended. */
export type PipeEnd = "closed" | "reset";

/** Pipes until both directions finished or either side reset. Never throws. */
export function pipeSocket(sock: net.Socket, t: Tunnel): Promise<PipeEnd> {
  return new Promise((resolve) => {
    let finished = false;
    let socketEnded = false; // the socket's FIN passed to the tunnel
    let tunnelEnded = false; // the tunnel's FIN passed to the socket
    const finish = (how: PipeEnd) => {
      if (finished) return;
      finished = true;
      sock.off("data", onData);
      resolve(how);
    };
    const resetSocket = () => {
      if (!sock.destroyed) sock.resetAndDestroy();
      finish("reset");
    };
    const onData = (chunk: Uint8Array) => {
      if (t.done) return;
      if (!t.write(chunk)) {
        sock.pause();
        t.drained().then(() => {
          if (!finished) sock.resume();
        });
      }
    };
    sock.on("data", onData);
    sock.on("end", () => {
      socketEnded = true;
      if (!t.done) t.closeWrite();
      if (tunnelEnded) finish("closed");
    });
    sock.on("error", (e: Error & { code?: string }) => {
      if (finished) return;
      t.reset(e.code === "ECONNRESET" ? "connection reset" : e.message);
      finish("reset");
    });
    sock.on("close", () => {
      if (finished) return;
      if (!(socketEnded && tunnelEnded)) {
        t.reset("connection closed");
        finish("reset");
      }
    });
    (async () => {
      try {
        for (let c = await t.read(); c; c = await t.read()) {
          if (finished) return;
          if (!sock.write(c)) await drainOrClose(sock);
        }
        if (finished) return;
        tunnelEnded = true;
        sock.end();
        if (socketEnded) finish("closed");
      } catch {
        // A reset from the peer (or the stream failed): the socket gets a TCP RST.
        resetSocket();
      }
    })();
  });
}

/** Resolves when the socket can take more (it drained) or closed: what a writer waits for after write() said false. */
export function drainOrClose(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off("drain", done);
      sock.off("close", done);
      resolve();
    };
    sock.once("drain", done);
    sock.once("close", done);
  });
}
