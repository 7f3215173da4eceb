/**
 * Bad input ends only its own request or stream, with a gRPC status and a log line; the connection, the session and
 * the manager go on. Requests are built by hand over node:http2 (and a raw socket for HTTP/1.1).
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { CONTENT_TYPE, encodeFrame, Status } from "../proto/grpc_web.ts";
import { Channel } from "../proto/channel.ts";
import { codecs, encodeTunnelFrame, methods, Protocol } from "../proto/messages.ts";
import { connect, DialCode } from "../proto/mod.ts";
import { startManager, tcpEchoServer } from "./manager_fixture.ts";

interface RawResult {
  http: number;
  grpcStatus: number;
  message: string;
}

/** Sends raw body bytes as one call and returns the status from headers (trailers-only) or the trailers frame. */
function rawCall(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const st = session.request({ ":method": "POST", ":path": path, "content-type": CONTENT_TYPE, ...headers });
    let http = 0;
    let status: string | undefined;
    let message = "";
    const chunks: Uint8Array[] = [];
    st.on("response", (h) => {
      http = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) {
        status = String(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    });
    st.on("data", (c: Uint8Array) => chunks.push(c));
    st.on("error", reject);
    st.on("close", () => {
      if (status === undefined) {
        const all = new TextDecoder().decode(Uint8Array.from(chunks.flatMap((c) => [...c])));
        status = /grpc-status: (\d+)/.exec(all)?.[1];
        message = decodeURIComponent(/grpc-message: ([^\r]*)/.exec(all)?.[1] ?? "");
      }
      resolve({ http, grpcStatus: Number(status ?? -1), message });
    });
    st.end(body);
  });
}

const VERSION_PATH = methods.Version!.path;
const versionBody = encodeFrame(codecs.VersionRequest.encode({}));

Deno.test("bad frames, unknown methods and wrong tokens end one request; the next on the same connection works", async () => {
  const m = await startManager({ token: "t0k", maxMessageSize: 4096 });
  const session = http2.connect(m.url);
  const auth = { authorization: "Bearer t0k" };
  try {
    const cases: [string, Promise<RawResult>, number][] = [
      [
        "garbage",
        rawCall(session, methods.Arrive!.path, encodeFrame(new Uint8Array([0xff, 0xff, 0xff])), auth),
        Status.INVALID_ARGUMENT,
      ],
      ["truncated", rawCall(session, VERSION_PATH, versionBody.subarray(0, 3), auth), Status.INVALID_ARGUMENT],
      ["short body", rawCall(session, VERSION_PATH, new Uint8Array([0, 0, 0, 0, 9, 1]), auth), Status.INVALID_ARGUMENT],
      ["oversized", rawCall(session, VERSION_PATH, encodeFrame(new Uint8Array(5000)), auth), Status.RESOURCE_EXHAUSTED],
      ["compressed", rawCall(session, VERSION_PATH, new Uint8Array([1, 0, 0, 0, 0]), auth), Status.UNIMPLEMENTED],
      ["unknown method", rawCall(session, "/tp.manager.v1.Manager/Nope", versionBody, auth), Status.UNIMPLEMENTED],
      ["no token", rawCall(session, VERSION_PATH, versionBody), Status.UNAUTHENTICATED],
      [
        "wrong token",
        rawCall(session, VERSION_PATH, versionBody, { authorization: "Bearer nope" }),
        Status.UNAUTHENTICATED,
      ],
      [
        "wrong content type",
        rawCall(session, VERSION_PATH, versionBody, { ...auth, "content-type": "application/json" }),
        Status.INVALID_ARGUMENT,
      ],
      [
        "unknown session",
        rawCall(session, methods.Keepalive!.path, encodeFrame(codecs.SessionRef.encode({ sessionId: "x" })), auth),
        Status.NOT_FOUND,
      ],
    ];
    for (const [name, p, want] of cases) {
      const r = await p;
      assert.equal(r.grpcStatus, want, `${name}: got ${r.grpcStatus} (${r.message})`);
      const ok = await rawCall(session, VERSION_PATH, versionBody, auth);
      assert.equal(ok.grpcStatus, Status.OK, `follow-up after ${name}`);
    }
    assert.ok(m.logger.lines.filter((l) => l.level === "warn").length >= cases.length, "each is logged");
  } finally {
    session.close();
    await m.close();
  }
});

Deno.test("a malformed frame inside a tunnel ends that stream only; the session's other tunnel goes on", async () => {
  const m = await startManager();
  const echo = tcpEchoServer();
  const s = await connect(m.url, undefined);
  try {
    const good = await s.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    assert.equal(good.dial.code, DialCode.ok);
    // A raw Tunnel stream on the same HTTP/2 connection: a valid open, then bytes that are not a TunnelFrame.
    const raw = s.channel.open(methods.Tunnel!.path);
    const open = encodeTunnelFrame({
      kind: "open",
      open: {
        sessionId: s.id,
        protocol: Protocol.tcp,
        source: null,
        destination: { ip: "127.0.0.1", port: echo.port },
      },
    });
    const trailers = new Promise<string>((resolve) => {
      let text = "";
      raw.onData = (c: Uint8Array) => (text += new TextDecoder().decode(c));
      raw.onClose = () => resolve(text);
    });
    raw.write(encodeFrame(open));
    raw.write(encodeFrame(new Uint8Array([0x12, 0xff, 0x01])));
    raw.end();
    assert.match(await trailers, new RegExp(`grpc-status: ${Status.INVALID_ARGUMENT}`));
    good.write(new TextEncoder().encode("still here"));
    assert.equal(new TextDecoder().decode((await good.read())!), "still here");
    good.closeWrite();
    assert.equal(await good.read(), null);
    await good.ended;
  } finally {
    await s.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("HTTP/1.1 without gRPC-web headers gets 415, and the same connection then serves a gRPC-web call", async () => {
  const m = await startManager();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: m.port });
  try {
    const bad = "POST /tp.manager.v1.Manager/Version HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\n" +
      "content-length: 5\r\n\r\nhello";
    await conn.write(new TextEncoder().encode(bad));
    const first = await readHttp1(conn);
    assert.match(first, /^HTTP\/1\.1 415/);
    assert.match(first, /grpc-status: 3/);
    const head = `POST ${VERSION_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: ${CONTENT_TYPE}\r\nx-grpc-web: 1\r\n` +
      `content-length: ${versionBody.length}\r\n\r\n`;
    await conn.write(new Uint8Array([...new TextEncoder().encode(head), ...versionBody]));
    const second = await readHttp1(conn);
    assert.match(second, /^HTTP\/1\.1 200/);
    assert.match(second, /grpc-status: 0/);
  } finally {
    conn.close();
    await m.close();
  }
});

/** Reads one HTTP/1.1 response (content-length or chunked, ending with a zero chunk) as text. */
async function readHttp1(conn: Deno.Conn): Promise<string> {
  let text = "";
  const buf = new Uint8Array(8192);
  for (let i = 0; i < 50; i++) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd < 0) continue;
    const len = /content-length: (\d+)/i.exec(text.slice(0, headEnd));
    if (len && text.length - headEnd - 4 >= Number(len[1])) break;
    if (/transfer-encoding: chunked/i.test(text) && text.endsWith("0\r\n\r\n")) break;
  }
  return text;
}

Deno.test("Channel.unary reports a manager's non-OK status as a GrpcError", async () => {
  const m = await startManager();
  const ch = new Channel(m.url);
  try {
    await assert.rejects(
      ch.unary(methods.GetClusterInfo!.path, codecs.SessionRef.encode({ sessionId: "nope" })),
      (e: Error & { code?: number }) => e.code === Status.NOT_FOUND,
    );
  } finally {
    await ch.destroy();
    await m.close();
  }
});
