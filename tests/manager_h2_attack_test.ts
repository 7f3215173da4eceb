/**
 * Issue 14's attacks on the manager's HTTP/2 port, each sent over a raw socket to an in-process manager on loopback.
 * Each test checks that the attacking connection gets GOAWAY (its code read from the server's own Connection, and
 * from the wire where the attacker still reads), that what the server held stayed within a bound (its counters, or
 * the process's RSS before and after), and that a normal client is served in the same run.
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { Connection } from "../proto/h2/connection.ts";
import { concat } from "../base/bytes.ts";
import {
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  pingFrame,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from "../proto/h2/frame.ts";
import { CONTENT_TYPE } from "../proto/grpc_web.ts";
import { SERVICE_NAME } from "../proto/messages.ts";
import { GET_HEALTHZ, header, healthz, RawH2 } from "./h2_raw.ts";
import { type RunningManager, startManager } from "./manager_fixture.ts";
import type { ListenLimits } from "../manager/listen.ts";
import type { ManagerConfig } from "../manager/config.ts";

const MiB = 1 << 20;

/** A manager whose HTTP/2 connections the test can watch. */
async function watchedManager(
  limits: Partial<ListenLimits> = {},
  config: Partial<ManagerConfig> = {},
): Promise<RunningManager & { conns: Connection[] }> {
  const conns: Connection[] = [];
  const m = await startManager(config, { limits, onConnection: (c) => conns.push(c) });
  return Object.assign(m, { conns });
}

/** How the server's connection ended, within `ms`. */
async function serverClose(c: Connection | undefined, ms = 5000): Promise<string> {
  assert.ok(c, "the server saw the connection");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((
    _,
    r,
  ) => (timer = setTimeout(() => r(new Error("the server kept the connection")), ms)));
  try {
    return errorName((await Promise.race([c.closed, t])).code);
  } finally {
    clearTimeout(timer);
  }
}

function rssMiB(): number {
  return Deno.memoryUsage().rss / MiB;
}

const POST_TUNNEL: [string, string][] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":authority", "tp.test"],
  [":path", `/${SERVICE_NAME}/Tunnel`],
  ["content-type", CONTENT_TYPE],
];

Deno.test("a CONTINUATION flood (zero-length, never END_HEADERS) gets GOAWAY ENHANCE_YOUR_CALM after 8", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    const rss = rssMiB();
    const headers = frame(FrameType.HEADERS, 0, 1, a.encoder.encode(GET_HEALTHZ));
    const flood = concat(Array.from({ length: 10_000 }, () => frame(FrameType.CONTINUATION, 0, 1)));
    await a.send(headers);
    for (let i = 0; i < 100 && await a.send(flood); i++); // up to a million frames, 9 MB, while the server reads
    assert.equal(await serverClose(m.conns[0]), "ENHANCE_YOUR_CALM");
    const g = await a.untilGoaway();
    assert.equal(g && errorName(g.code), "ENHANCE_YOUR_CALM");
    assert.ok(rssMiB() - rss < 64, `RSS grew ${(rssMiB() - rss).toFixed(1)} MiB`);
    assert.equal(await healthz(m.port), "200");
  } finally {
    await a.closed();
    await m.close();
  }
});

Deno.test("rapid reset (HEADERS then RST_STREAM, in a loop) gets GOAWAY ENHANCE_YOUR_CALM after the burst", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    const block = a.encoder.encode(POST_TUNNEL);
    let id = 1;
    // 20,000 streams opened and reset, 200 a write; the server allows a burst of 1,000 and 33 a second after it.
    for (let batch = 0; batch < 100; batch++) {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < 200; i++, id += 2) {
        parts.push(a.headers(id, POST_TUNNEL, false, block), rstStreamFrame(id, ErrorCode.CANCEL));
      }
      if (!await a.send(concat(parts))) break;
    }
    assert.equal(await serverClose(m.conns[0]), "ENHANCE_YOUR_CALM");
    const c = m.conns[0]!;
    assert.ok(c.counters.peerResets <= 1000 + 100, `${c.counters.peerResets} resets taken`);
    assert.ok(c.counters.peerResets >= 1000, `${c.counters.peerResets} resets taken`);
    const g = await a.untilGoaway(5000);
    if (g) assert.equal(errorName(g.code), "ENHANCE_YOUR_CALM");
    assert.equal(await healthz(m.port), "200");
    assert.equal(m.manager.active.size, 0, "no tunnel stream outlived the connection");
  } finally {
    await a.closed();
    await m.close();
  }
});

Deno.test("SETTINGS with 2,730 entries (a whole 16 KiB frame) gets GOAWAY ENHANCE_YOUR_CALM without walking the streams", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    const entries: [number, number][] = Array.from({ length: 2730 }, (_, i) => [0x4, 65_535 + (i & 1)]);
    await a.send(settingsFrame(entries));
    assert.equal(await serverClose(m.conns[0]), "ENHANCE_YOUR_CALM");
    const g = await a.untilGoaway();
    assert.equal(g && errorName(g.code), "ENHANCE_YOUR_CALM");
    assert.equal(await healthz(m.port), "200");
  } finally {
    await a.closed();
    await m.close();
  }
});

for (const kind of ["PING", "SETTINGS"] as const) {
  Deno.test(`a ${kind} flood from a peer that never reads is cut off once 10,000 ACKs are queued`, async () => {
    const m = await watchedManager();
    const a = await RawH2.connect(m.port);
    try {
      await a.handshake();
      const rss = rssMiB();
      const one = kind === "PING" ? pingFrame(new Uint8Array(8), false) : settingsFrame([]);
      const chunk = concat(Array.from({ length: 5_000 }, () => one));
      // At most 2 million frames (34 MB of PINGs); the server gives up long before, and the writes then fail.
      for (let i = 0; i < 400 && await a.send(chunk); i++);
      assert.equal(await serverClose(m.conns[0]), "ENHANCE_YOUR_CALM");
      assert.equal(a.writeFailed, true, "the server closed the connection under the flood");
      const grew = rssMiB() - rss;
      assert.ok(grew < 64, `RSS grew ${grew.toFixed(1)} MiB`);
      assert.equal(await healthz(m.port), "200");
    } finally {
      await a.closed();
      await m.close();
    }
  });
}

Deno.test("requests that never read their answers are cut off at 4 MiB queued, not held without bound", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    const block = a.encoder.encode(GET_HEALTHZ);
    let id = 1;
    for (let batch = 0; batch < 200; batch++) {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < 500; i++, id += 2) parts.push(a.headers(id, GET_HEALTHZ, true, block));
      if (!await a.send(concat(parts))) break;
    }
    assert.equal(await serverClose(m.conns[0], 10_000), "ENHANCE_YOUR_CALM");
    assert.equal(await healthz(m.port), "200");
  } finally {
    await a.closed();
    await m.close();
  }
});

Deno.test("a rejection echoes at most 64 characters of the request's content-type and path, in reply and log", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    const big = "x".repeat(7_000); // twice, under the manager's 16 KiB frames
    const req: [string, string][] = [
      [":method", "POST"],
      [":scheme", "http"],
      [":authority", "tp.test"],
      [":path", `/${big}`],
      ["content-type", `application/${big}`],
    ];
    await a.send(a.headers(1, req, true));
    const r = await a.response(1);
    assert.equal(header(r.headers, ":status"), "415");
    const message = decodeURIComponent(header(r.headers, "grpc-message") ?? "");
    assert.ok(message.length < 200, `grpc-message of ${message.length} characters`);
    assert.ok(r.headerBytes < 400, `${r.headerBytes} octets of response headers`);
    const lines = m.logger.lines.filter((l) => l.msg === "request rejected");
    assert.ok(lines.length > 0);
    assert.ok(JSON.stringify(lines).length < 1000, "the log line quotes a clipped path");
    // Through HPACK's dynamic table: a 4 KB content-type indexed once, then sent as one octet per request.
    const indexed = concat([
      new Uint8Array([0x82, 0x86, 0x84]), // :method GET, :scheme http, :path /
      new Uint8Array([0x5f]), // literal with incremental indexing, name: static 31 (content-type)
      hpackString("a".repeat(4000)),
    ]);
    await a.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, indexed));
    const first = await a.response(3);
    for (let id = 5; id < 25; id += 2) {
      await a.send(
        frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, new Uint8Array([0x82, 0x86, 0x84, 0xbe])),
      );
      const r2 = await a.response(id);
      assert.equal(header(r2.headers, ":status"), "415");
      assert.ok(r2.headerBytes < 400, `${r2.headerBytes} octets of reply to a 4-octet block`);
    }
    assert.ok(first.headerBytes < 400);
  } finally {
    await a.closed();
    await m.close();
  }
});

/** An HPACK string literal, not Huffman-coded, length under 2^14 (RFC 7541 section 5.2). */
function hpackString(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  const len = b.length;
  const prefix = len < 127 ? [len] : [127, ...varint(len - 127)];
  return concat([new Uint8Array(prefix), b]);
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

Deno.test("a 16 KiB frame written one byte at a time is reassembled with copying linear in its size", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    (a.conn as Deno.TcpConn).setNoDelay(true);
    const ping = pingFrame(new Uint8Array(8), false);
    const data = concat([a.headers(1, GET_HEALTHZ, false), frame(FrameType.DATA, 0, 1, new Uint8Array(16_384))]);
    for (let i = 0; i < data.length; i++) await a.send(data.subarray(i, i + 1));
    await a.send(ping);
    for (;;) {
      const f = await a.read(5000);
      assert.ok(f, "the server answered the PING sent after the frame");
      if (f.type === FrameType.PING) break;
    }
    const c = m.conns[0]!;
    assert.ok(
      c.counters.inputCopied < 8 * data.length,
      `${c.counters.inputCopied} bytes copied for ${data.length} bytes that came one a write`,
    );
  } finally {
    await a.closed();
    await m.close();
  }
});

Deno.test("MAX_CONCURRENT_STREAMS is advertised and a stream past it is refused; the others go on", async () => {
  const m = await watchedManager({ maxStreamsPerConnection: 10 });
  const a = await RawH2.connect(m.port);
  try {
    await a.send(concat([new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settingsFrame([])]));
    let max: number | undefined;
    for (;;) {
      const f = await a.read(5000);
      assert.ok(f);
      if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) {
        const v = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
        for (let i = 0; i < f.payload.length; i += 6) if (v.getUint16(i) === 0x3) max = v.getUint32(i + 2);
        break;
      }
    }
    assert.equal(max, 10);
    await a.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    const block = a.encoder.encode(POST_TUNNEL);
    const parts: Uint8Array[] = [];
    for (let id = 1; id <= 21; id += 2) parts.push(a.headers(id, POST_TUNNEL, false, block));
    await a.send(concat(parts));
    const r = await a.response(21);
    assert.equal(r.reset, ErrorCode.REFUSED_STREAM);
    assert.equal(m.conns[0]!.counters.refusedStreams, 1);
    assert.equal(m.conns[0]!.streamCount, 10);
  } finally {
    await a.closed();
    await m.close();
  }
});

Deno.test("tunnel streams that never send their open frame hold little and are ended at the open timeout", async () => {
  const m = await watchedManager({}, { openTimeoutMs: 1000 });
  const a = await RawH2.connect(m.port);
  try {
    await a.handshake();
    // Room for the trailers that end each stream (the attacker reads nothing until the end).
    await a.send(windowUpdateFrame(0, 1 << 30));
    const heap = Deno.memoryUsage().heapUsed;
    const block = a.encoder.encode(POST_TUNNEL);
    const parts: Uint8Array[] = [];
    const n = 4000;
    for (let i = 0, id = 1; i < n; i++, id += 2) parts.push(a.headers(id, POST_TUNNEL, false, block));
    await a.send(concat(parts));
    const c = m.conns[0]!;
    const deadline = Date.now() + 10_000;
    while (c.streamCount < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(c.streamCount, n);
    const perStream = (Deno.memoryUsage().heapUsed - heap) / n;
    console.log(`heap per stream waiting for its open frame: ${perStream.toFixed(0)} bytes`);
    assert.ok(perStream < 16 * 1024, `${perStream.toFixed(0)} bytes per stream`);
    while (c.streamCount > 0 && Date.now() < deadline + 5000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(c.streamCount, 0, "every stream ended at the open timeout");
    assert.equal(await healthz(m.port), "200");
  } finally {
    await a.closed();
    await m.close();
  }
});

/** A TCP connection from `localAddress` (node:net: Deno.connect cannot pick the source address). */
function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Resolves once the server closed `s` (EOF or reset), with how long that took. */
function closedBy(s: net.Socket): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const done = () => resolve(Date.now() - t0);
    if (s.destroyed || s.readableEnded) return done();
    s.on("data", () => {});
    s.once("end", done);
    s.once("close", done);
    s.once("error", done);
  });
}

Deno.test("slowloris: a connection with less than a preface is closed at the deadline; caps per source and in all", async () => {
  const m = await watchedManager({ prefaceTimeoutMs: 500, maxConnectionsPerSource: 4, maxConnections: 6 });
  const held: net.Socket[] = [];
  try {
    // One byte of the preface, then nothing.
    const slow = await connectFrom(m.port, "127.0.0.2");
    slow.write("P");
    const took = await closedBy(slow);
    assert.ok(took >= 400 && took < 5000, `closed after ${took} ms`);
    slow.destroy();
    // The preface's magic without its SETTINGS: the same deadline.
    const half = await RawH2.connect(m.port);
    await half.send(new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    const g = await half.untilGoaway(5000);
    assert.equal(g && errorName(g.code), "PROTOCOL_ERROR");
    await half.closed();
    // Four idle connections from 127.0.0.2 are its share: the fifth is closed at once.
    for (let i = 0; i < 4; i++) held.push(await connectFrom(m.port, "127.0.0.2"));
    const fifth = await connectFrom(m.port, "127.0.0.2");
    assert.ok(await closedBy(fifth) < 400, "the fifth connection from one source was closed at once");
    fifth.destroy();
    // Another source still gets in, until the total is reached.
    assert.equal(await healthz(m.port), "200");
    held.push(await connectFrom(m.port, "127.0.0.3"), await connectFrom(m.port, "127.0.0.3"));
    const seventh = await connectFrom(m.port, "127.0.0.4");
    assert.ok(await closedBy(seventh) < 400, "a connection over the total was closed at once");
    seventh.destroy();
    // Once the idle ones time out, their places are free again.
    await Promise.all(held.map(closedBy));
    assert.equal(await healthz(m.port), "200");
  } finally {
    for (const s of held) s.destroy();
    await m.close();
  }
});

Deno.test("a handler that throws ends its own stream (INTERNAL_ERROR), never the connection or the process", async () => {
  const m = await watchedManager();
  const a = await RawH2.connect(m.port);
  const serveCall = m.manager.serveCall.bind(m.manager);
  try {
    await a.handshake();
    // A bug stands in for a handler: one that throws at once, one whose promise rejects after answering nothing.
    m.manager.serveCall = (call, port) => {
      if (call.path === "/sync-bug") throw new Error("bug (test)");
      if (call.path === "/async-bug") return Promise.reject(new Error("bug (test)"));
      return serveCall(call, port);
    };
    const get = (path: string): [string, string][] => [[":method", "GET"], [":scheme", "http"], [":path", path]];
    await a.send(concat([a.headers(1, get("/sync-bug"), true), a.headers(3, get("/async-bug"), true)]));
    assert.equal((await a.response(1)).reset, ErrorCode.INTERNAL_ERROR);
    const r = await a.response(3);
    assert.equal(header(r.headers, "grpc-status"), "13", "a rejection is answered INTERNAL");
    await a.send(a.headers(5, GET_HEALTHZ, true));
    assert.equal(header((await a.response(5)).headers, ":status"), "200", "the same connection goes on");
    assert.equal(m.conns[0]!.counters.handlerErrors, 1);
    assert.ok(m.logger.lines.some((l) => l.msg === "handler error"));
  } finally {
    m.manager.serveCall = serveCall;
    await a.closed();
    await m.close();
  }
});
