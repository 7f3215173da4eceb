/**
 * One request to the manager, whatever carries it: the manager's handlers read the request and answer through
 * this interface. Two carriers: `H2Call` (h2_call.ts, a stream of tp's own HTTP/2 server: the tunnel's path) and
 * `WebCall` (below, a web Request/Response pair from Deno.serve: HTTP/1.1 for /metrics, /healthz, probes and
 * browser-style gRPC-web clients).
 */
import { CONTENT_TYPE, encodeGrpcMessage, type Status } from "../proto/grpc_web.ts";
import { type FrameSink, MessageReader, type MessageSource, ResponseFrames } from "./_streams.ts";

export interface ServerCall {
  readonly method: string;
  /** The request path, without the query. */
  readonly path: string;
  /** A request header by lowercase name. */
  header(name: string): string | null;
  /** The request body as gRPC-web messages. */
  messages(maxMessageSize: number): MessageSource;
  /** Reads and drops the body (up to `limit` bytes, for at most 200 ms). */
  drain(limit: number): Promise<void>;
  /** A complete plain response. */
  text(status: number, contentType: string, body: string): void;
  /** A gRPC error with no body: grpc-status in the headers. */
  trailersOnly(code: Status, message: string, httpStatus?: number): void;
  /** A complete gRPC-web body (messages and the trailers frame). */
  body(bytes: Uint8Array): void;
  /**
   * A streamed gRPC-web body of at most `highWater` bytes queued. `lazyHeaders`: the response headers may wait for
   * the first frame (HTTP/2; a stream whose first frame comes soon, a Tunnel's dial result).
   */
  frames(highWater: number, options?: { lazyHeaders?: boolean }): FrameSink;
}

/** A Deno.serve request; `response` settles with what the handler answered. */
export class WebCall implements ServerCall {
  readonly method: string;
  readonly path: string;
  readonly response: Promise<Response>;
  #resolve!: (r: Response) => void;

  constructor(readonly request: Request) {
    this.method = request.method;
    this.path = new URL(request.url).pathname;
    this.response = new Promise((r) => (this.#resolve = r));
  }

  header(name: string): string | null {
    return this.request.headers.get(name);
  }

  messages(maxMessageSize: number): MessageSource {
    return new MessageReader(this.request.body, maxMessageSize);
  }

  drain(limit: number): Promise<void> {
    return drainBody(this.request.body, limit);
  }

  text(status: number, contentType: string, body: string): void {
    this.#resolve(new Response(body, { status, headers: { "content-type": contentType } }));
  }

  trailersOnly(code: Status, message: string, httpStatus = 200): void {
    this.#resolve(
      new Response(null, {
        status: httpStatus,
        headers: {
          "content-type": CONTENT_TYPE,
          "grpc-status": String(code),
          "grpc-message": encodeGrpcMessage(message),
        },
      }),
    );
  }

  body(bytes: Uint8Array): void {
    this.#resolve(new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { "content-type": CONTENT_TYPE } }));
  }

  frames(highWater: number): FrameSink {
    const out = new ResponseFrames(highWater);
    this.#resolve(new Response(out.body, { headers: { "content-type": CONTENT_TYPE } }));
    return out;
  }
}

/**
 * Reads and drops a rejected request's body (up to `limit` bytes, for at most 200 ms), so an HTTP/1.1 connection
 * stays usable for the next request; a longer or endless body is cancelled.
 */
async function drainBody(body: ReadableStream<Uint8Array> | null, limit: number): Promise<void> {
  if (!body) return;
  const reader = body.getReader();
  let n = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), 200)));
  try {
    while (n <= limit) {
      const r = await Promise.race([reader.read(), timeout]);
      if (r === "timeout" || r.done) break;
      n += r.value.length;
    }
  } catch {
    // the client went away; nothing to drain
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
  }
}
