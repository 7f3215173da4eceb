/**
 * kubectl's port-forward on the API server double: SPDY/3.1 (spdy-transport) on a socket already upgraded, where
 * kubectl opens an error stream and a data stream per forwarded connection, with headers streamType, port and
 * requestID; each pair is relayed to a connection the caller dials. Importing this module also teaches spdy-transport
 * to take such streams (see below), in this double only.
 */
import type net from "node:net";
import type { Duplex } from "node:stream";
import spdy from "spdy-transport";

// spdy-transport insists on HTTP's ":method" and ":path" in every SYN_STREAM; Kubernetes' SPDY client (moby
// spdystream) sends only streamType, port and requestID. Give those streams placeholders, in this double only.
{
  const parser = (spdy as unknown as { protocol: { spdy: { parser: { create(o: unknown): unknown } } } }).protocol.spdy
    .parser;
  const create = parser.create;
  parser.create = (o: unknown) => {
    const p = create(o) as { parseKVs(buf: unknown, cb: (e: unknown, h?: Record<string, string>) => void): void };
    const parseKVs = p.parseKVs;
    p.parseKVs = function (buf, cb) {
      parseKVs.call(this, buf, (e, h) => {
        if (!e && h && h[":method"] === undefined && h["streamtype"] !== undefined) {
          h[":method"] = "POST";
          h[":path"] = "/";
        }
        cb(e, h);
      });
    };
    return p;
  };
}

/** The part of spdy-transport's stream tp's double uses (the package has no types). */
type SpdyStream = Duplex & { headers: Record<string, string>; respond(status: number, headers: object): void };

/** A SPDY connection, as far as cutting it goes. */
export interface SpdyConnection {
  destroyStreams(): void;
  end(): void;
}

/**
 * Serves kubectl's SPDY port-forward on `stream`: a stream pair per forwarded connection, relayed to `dial(port)`,
 * a dial error written on the pair's error stream. Returns the connection, for the caller to cut.
 */
export function serveSpdyPortForward(stream: Duplex, pod: string, dial: (port: number) => net.Socket): SpdyConnection {
  const conn = spdy.connection.create(stream, { protocol: "spdy", isServer: true, windowSize: 1 << 20 });
  conn.start(3.1);
  stream.on("error", () => {});
  const pairs = new Map<string, { error?: SpdyStream; data?: SpdyStream }>();
  conn.on("error", () => {});
  conn.on("stream", (st: SpdyStream) => {
    st.on("error", () => {});
    st.respond(200, {});
    const h = st.headers;
    const id = String(h["requestid"] ?? "");
    const port = Number(h["port"]);
    const pair = pairs.get(id) ?? {};
    pairs.set(id, pair);
    if (h["streamtype"] === "error") pair.error = st;
    else if (h["streamtype"] === "data") pair.data = st;
    if (!pair.error || !pair.data) return;
    pairs.delete(id);
    const c = dial(port);
    const { error, data } = pair;
    c.on("error", (e: Error) => {
      error.end(`error forwarding port ${port} to pod ${pod}: ${e.message}`);
      data.end();
    });
    data.pipe(c);
    c.pipe(data);
    data.on("close", () => c.destroy());
  });
  return conn;
}
