import assert from "node:assert/strict";
import http2 from "node:http2";
import { hex } from "../../net/wire/testdata/hex.ts";
import { Connection, type ConnectionOptions, type Stream, type Transport } from "./connection.ts";
import {
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  HEADER_LENGTH,
  parseHeader,
  parseSettings,
  pingFrame,
  PREFACE,
  readU32,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frame.ts";
import type { HeaderList } from "./hpack.ts";
import { ConnTransport } from "./transport.ts";
import { concat } from "../../base/bytes.ts";

// ------------------------------------------------------------------------------------------------ helpers

const te = new TextEncoder();
const td = new TextDecoder();
const KiB = 1024;
const MiB = 1024 * KiB;

const tick = () => new Promise<void>((r) => setTimeout(r, 0));

/** `p`, or a rejection naming `what` after `ms`: a bug fails the test instead of hanging it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits a macrotask at a time until `done()`, failing after `ms`. */
async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await tick();
  }
}

/** `n` bytes of a pseudo-random sequence (a misplaced or repeated chunk shows as a mismatch). */
function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Asserts equal bytes, naming the first offset that differs (not a 5 MiB diff). */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  assert.equal(i, actual.length, `${what}: first difference at byte ${i}`);
}

/** A frame as a connection wrote it. */
interface Written {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** Splits the bytes a connection wrote into frames with parseHeader (after the client preface, when expected). */
class FrameLog {
  readonly frames: Written[] = [];
  #rest: Uint8Array = new Uint8Array(0);
  #preface: boolean;

  constructor(expectPreface: boolean) {
    this.#preface = expectPreface;
  }

  add(bytes: Uint8Array): void {
    let b = this.#rest.length > 0 ? concat([this.#rest, bytes]) : bytes.slice();
    if (this.#preface) {
      if (b.length < PREFACE.length) {
        this.#rest = b;
        return;
      }
      assert.deepEqual(b.subarray(0, PREFACE.length), PREFACE, "a client starts with the preface");
      b = b.subarray(PREFACE.length);
      this.#preface = false;
    }
    let off = 0;
    while (b.length - off >= HEADER_LENGTH) {
      const h = parseHeader(b, off);
      if (b.length - off < HEADER_LENGTH + h.length) break;
      const payload = b.slice(off + HEADER_LENGTH, off + HEADER_LENGTH + h.length);
      this.frames.push({ type: h.type, flags: h.flags, streamId: h.streamId, payload });
      off += HEADER_LENGTH + h.length;
    }
    this.#rest = b.slice(off);
  }

  of(type: number, streamId?: number): Written[] {
    return this.frames.filter((f) => f.type === type && (streamId === undefined || f.streamId === streamId));
  }

  /** The RST_STREAM codes written for `streamId`. */
  resets(streamId: number): number[] {
    return this.of(FrameType.RST_STREAM, streamId).map((f) => readU32(f.payload, 0));
  }

  /** The last GOAWAY written, decoded. */
  goaway(): { lastStreamId: number; code: number; debug: string } | undefined {
    const f = this.of(FrameType.GOAWAY).at(-1);
    if (!f) return undefined;
    return {
      lastStreamId: readU32(f.payload, 0, true),
      code: readU32(f.payload, 4),
      debug: td.decode(f.payload.subarray(8)),
    };
  }
}

/**
 * Test double: one direction of an in-memory transport between two Connections. What `from` writes is handed to
 * `to.receive()` in order on a later macrotask; `buffered` counts bytes not delivered yet, and `from` hears
 * `transportDrained()` once they were. `close()` delivers what was written, then tells `to` its transport closed
 * (as a socket's EOF would). Every write is also parsed into `log`.
 */
class PipeTransport implements Transport {
  from!: Connection;
  to!: Connection;
  readonly log: FrameLog;
  buffered = 0;
  closed = false;
  #pending: Uint8Array[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #eofSent = false;

  constructor(fromClient: boolean) {
    this.log = new FrameLog(fromClient);
  }

  /** Nothing left to deliver and no timer armed. */
  get idle(): boolean {
    return this.#timer === undefined;
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.log.add(bytes);
    this.#pending.push(bytes);
    this.buffered += bytes.length;
    this.#arm();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#arm();
  }

  #arm(): void {
    this.#timer ??= setTimeout(() => this.#deliver(), 0);
  }

  #deliver(): void {
    this.#timer = undefined;
    const batch = this.#pending.splice(0);
    for (const b of batch) {
      this.buffered -= b.length;
      this.to.receive(b);
    }
    if (this.closed) {
      if (!this.#eofSent) {
        this.#eofSent = true;
        this.to.transportClosed("closed by the peer (test double)");
      }
    } else if (batch.length > 0) this.from.transportDrained();
  }
}

interface Pair {
  client: Connection;
  server: Connection;
  /** Client to server. */
  c2s: PipeTransport;
  /** Server to client. */
  s2c: PipeTransport;
}

/** Runs `body` with a client and a server Connection wired by PipeTransports; ends both and their timers after. */
async function withPair(
  clientOptions: ConnectionOptions,
  serverOptions: ConnectionOptions,
  body: (p: Pair) => Promise<void>,
): Promise<void> {
  const c2s = new PipeTransport(true);
  const s2c = new PipeTransport(false);
  const client = new Connection("client", c2s, clientOptions);
  const server = new Connection("server", s2c, serverOptions);
  c2s.from = client;
  c2s.to = server;
  s2c.from = server;
  s2c.to = client;
  try {
    await body({ client, server, c2s, s2c });
  } finally {
    client.destroy(ErrorCode.NO_ERROR, "test over");
    server.destroy(ErrorCode.NO_ERROR, "test over");
    await until(() => c2s.idle && s2c.idle, 5000, "the test double's deliveries");
  }
}

/** What one stream saw, in order. */
class Recorder {
  readonly events: string[] = [];
  readonly chunks: Uint8Array[] = [];
  received = 0;
  headers: HeaderList | undefined;
  trailers: HeaderList | undefined;
  ended = false;
  closeCode: number | undefined;
  closeReason = "";
  readonly closed: Promise<number>;

  constructor(readonly stream: Stream) {
    let resolve!: (code: number) => void;
    this.closed = new Promise((r) => (resolve = r));
    stream.onResponse = (h) => {
      this.headers = h;
      this.events.push("response");
    };
    stream.onData = (c) => {
      this.chunks.push(c);
      this.received += c.length;
      if (this.events.at(-1) !== "data") this.events.push("data");
    };
    stream.onTrailers = (h) => {
      this.trailers = h;
      this.events.push("trailers");
    };
    stream.onEnd = () => {
      this.ended = true;
      this.events.push("end");
    };
    stream.onClose = (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason;
      this.events.push(`close ${code}`);
      resolve(code);
    };
  }

  body(): Uint8Array {
    return concat(this.chunks);
  }

  text(): string {
    return td.decode(this.body());
  }
}

const request = (path: string, method = "POST"): HeaderList => [
  [":method", method],
  [":scheme", "http"],
  [":authority", "tp.test"],
  [":path", path],
];

/** A server handler: answers 200 and echoes the request body, then ends with a trailer counting the bytes. */
function echo(s: Stream): void {
  let n = 0;
  s.respond([[":status", "200"], ["content-type", "application/octet-stream"]]);
  s.onData = (c) => {
    n += c.length;
    s.write(c);
  };
  s.onEnd = () => s.end([["x-echoed", String(n)]]);
}

// ------------------------------------------------------------------------------------------------ client and server

Deno.test("a request gets response headers, body and trailers; both ends close the stream with code 0", async () => {
  let serverSide: Recorder | undefined;
  await withPair({}, {
    onStream: (s) => {
      serverSide = new Recorder(s);
      s.onEnd = () => {
        serverSide!.events.push("end");
        s.respond([[":status", "200"], ["x-reply", "yes"]]);
        s.write(te.encode(`got ${serverSide!.text()}`));
        s.end([["grpc-status", "0"]]);
      };
    },
  }, async ({ client, server }) => {
    const s = client.request(request("/hello"));
    const r = new Recorder(s);
    s.write(te.encode("hello, "));
    s.write(te.encode("server"));
    s.end([["x-request-trailer", "1"]]);
    assert.equal(await within(r.closed, 2000, "the client stream's onClose"), 0);
    assert.deepEqual(r.headers, [[":status", "200"], ["x-reply", "yes"]]);
    assert.equal(r.text(), "got hello, server");
    assert.deepEqual(r.trailers, [["grpc-status", "0"]]);
    assert.deepEqual(r.events, ["response", "data", "trailers", "end", "close 0"]);
    assert.equal(s.resetCode, undefined);

    assert.ok(serverSide);
    assert.equal(await within(serverSide.closed, 2000, "the server stream's onClose"), 0);
    assert.deepEqual(serverSide.stream.headers, request("/hello"));
    assert.deepEqual(serverSide.trailers, [["x-request-trailer", "1"]]);
    assert.deepEqual(serverSide.events, ["data", "trailers", "end", "close 0"]);
    assert.equal(client.streamCount, 0);
    assert.equal(server.streamCount, 0);
  });
});

Deno.test("END_STREAM on request and response headers closes the stream without DATA or RST_STREAM", async () => {
  let serverSide: Recorder | undefined;
  await withPair({}, {
    onStream: (s) => {
      serverSide = new Recorder(s);
      s.onEnd = () => {
        serverSide!.events.push("end");
        s.respond([[":status", "204"]], true);
      };
    },
  }, async ({ client, c2s, s2c }) => {
    const r = new Recorder(client.request(request("/", "GET"), true));
    assert.equal(await within(r.closed, 2000, "onClose"), 0);
    assert.deepEqual(r.events, ["response", "end", "close 0"]);
    assert.deepEqual(serverSide?.events, ["end", "close 0"]);
    const [req] = c2s.log.of(FrameType.HEADERS, 1);
    assert.equal(req?.flags, Flag.END_STREAM | Flag.END_HEADERS);
    const [res] = s2c.log.of(FrameType.HEADERS, 1);
    assert.equal(res?.flags, Flag.END_STREAM | Flag.END_HEADERS);
    assert.equal(c2s.log.of(FrameType.DATA).length + s2c.log.of(FrameType.DATA).length, 0);
    assert.equal(c2s.log.of(FrameType.RST_STREAM).length + s2c.log.of(FrameType.RST_STREAM).length, 0);
  });
});

// onStream runs before the HEADERS frame's END_STREAM is applied: a response ended from onStream closed the stream
// as if the client were still sending (RST_STREAM NO_ERROR, RFC 9113 section 8.1), and onEnd never came.
Deno.test("a server answering a GET from onStream still sees onEnd and sends no RST_STREAM", async () => {
  let serverSide: Recorder | undefined;
  await withPair({}, {
    onStream: (s) => {
      serverSide = new Recorder(s);
      s.respond([[":status", "204"]], true); // the request's END_STREAM came in the same HEADERS frame
    },
  }, async ({ client, s2c }) => {
    const r = new Recorder(client.request(request("/", "GET"), true));
    assert.equal(await within(r.closed, 2000, "onClose"), 0);
    assert.deepEqual(serverSide?.events, ["end", "close 0"]);
    assert.deepEqual(s2c.log.resets(1), [], "RST_STREAM after a request that had ended");
  });
});

Deno.test("a 5 MiB body crosses both ways byte for byte, the windows reopened by many WINDOW_UPDATEs", async () => {
  // 1 MiB windows (stream and connection) on both ends: 5 MiB each way needs both kinds of update.
  const options = { streamWindow: MiB, connectionWindow: MiB };
  await withPair(options, { ...options, onStream: echo }, async ({ client, c2s, s2c }) => {
    const body = pattern(5 * MiB, 7);
    const s = client.request(request("/echo"));
    const r = new Recorder(s);
    for (let off = 0; off < body.length; off += 100_000) s.write(body.slice(off, off + 100_000));
    s.end();
    assert.equal(await within(r.closed, 20_000, "the echo of 5 MiB"), 0);
    assertSameBytes(r.body(), body, "echoed body");
    assert.deepEqual(r.trailers, [["x-echoed", String(5 * MiB)]]);

    for (const [log, who] of [[s2c.log, "server"], [c2s.log, "client"]] as const) {
      const updates = log.of(FrameType.WINDOW_UPDATE);
      const streamCredit = updates.filter((f) => f.streamId === 1).reduce((n, f) => n + readU32(f.payload, 0), 0);
      const connCredit = updates.filter((f) => f.streamId === 0).reduce((n, f) => n + readU32(f.payload, 0), 0);
      assert.ok(updates.filter((f) => f.streamId === 1).length >= 10, `${who}: stream WINDOW_UPDATEs`);
      assert.ok(streamCredit >= 4 * MiB, `${who} credited ${streamCredit} bytes on the stream`);
      assert.ok(connCredit >= 4 * MiB, `${who} credited ${connCredit} bytes on the connection`);
      for (const f of log.of(FrameType.DATA)) assert.ok(f.payload.length <= 128 * KiB, "DATA within MAX_FRAME_SIZE");
    }
  });
});

Deno.test("pause() stops the peer once the 64 KiB stream window is used up, and resume() lets it finish", async () => {
  let serverSide: Recorder | undefined;
  await withPair({}, {
    streamWindow: 64 * KiB,
    onStream: (s) => {
      serverSide = new Recorder(s);
      s.pause();
      s.onEnd = () => {
        serverSide!.events.push("end");
        s.respond([[":status", "200"]], true);
      };
    },
  }, async ({ client }) => {
    const body = pattern(MiB, 3);
    const s = client.request(request("/upload"));
    const r = new Recorder(s);
    s.write(body);
    s.end();
    await until(() => serverSide !== undefined && serverSide.received > 0, 2000, "the first DATA");
    // Give the client every chance to send more than the window allows.
    for (let i = 0; i < 20; i++) await tick();
    const whilePaused = serverSide!.received;
    assert.ok(whilePaused <= 64 * KiB, `${whilePaused} bytes arrived while paused, over the 64 KiB window`);
    assert.ok(whilePaused >= 64 * KiB - 1, `only ${whilePaused} bytes arrived: the window was not used up`);
    assert.ok(s.bufferedAmount >= MiB - 64 * KiB, "the client holds the rest");
    assert.equal(r.events.length, 0, "no response yet");

    serverSide!.stream.resume();
    assert.equal(await within(r.closed, 5000, "the upload to finish"), 0);
    assertSameBytes(serverSide!.body(), body, "uploaded body");
    assert.equal(s.bufferedAmount, 0);
  });
});

Deno.test("reset() gives the peer onClose with the RST_STREAM code, either way", async () => {
  const serverSide: Recorder[] = [];
  await withPair({}, {
    onStream: (s) => {
      serverSide.push(new Recorder(s));
      s.respond([[":status", "200"]]);
      if (s.headers?.find(([n]) => n === ":path")?.[1] === "/server-resets") s.reset(ErrorCode.ENHANCE_YOUR_CALM);
    },
  }, async ({ client, server, c2s, s2c }) => {
    // The client resets.
    const a = client.request(request("/client-resets"));
    const ra = new Recorder(a);
    a.write(te.encode("some"));
    await until(() => serverSide[0]?.received === 4, 2000, "the first stream's data");
    a.reset();
    assert.equal(ra.closeCode, ErrorCode.CANCEL, "the resetting side closes at once");
    assert.equal(await within(serverSide[0]!.closed, 2000, "the server's onClose"), ErrorCode.CANCEL);
    assert.equal(serverSide[0]!.stream.resetCode, ErrorCode.CANCEL);
    assert.match(serverSide[0]!.closeReason, /CANCEL/);
    assert.deepEqual(c2s.log.resets(1), [ErrorCode.CANCEL]);

    // The server resets.
    const rb = new Recorder(client.request(request("/server-resets")));
    assert.equal(await within(rb.closed, 2000, "the client's onClose"), ErrorCode.ENHANCE_YOUR_CALM);
    assert.equal(rb.stream.resetCode, ErrorCode.ENHANCE_YOUR_CALM);
    assert.match(rb.closeReason, /ENHANCE_YOUR_CALM/);
    assert.deepEqual(s2c.log.resets(3), [ErrorCode.ENHANCE_YOUR_CALM]);
    assert.equal(client.streamCount, 0);
    assert.equal(server.streamCount, 0);
    assert.ok(client.usable && server.usable, "a stream error leaves the connection up");
  });
});

Deno.test("ping() resolves with the round-trip time, from either end", async () => {
  await withPair({}, {}, async ({ client, server, c2s, s2c }) => {
    const [a, b] = await within(Promise.all([client.ping(), server.ping()]), 2000, "the PING ACKs");
    assert.ok(a >= 0 && b >= 0);
    assert.equal(s2c.log.of(FrameType.PING).filter((f) => f.flags & Flag.ACK).length, 1);
    assert.equal(c2s.log.of(FrameType.PING).filter((f) => f.flags & Flag.ACK).length, 1);
  });
});

Deno.test("close() sends GOAWAY and `closed` resolves only after the open stream finished", async () => {
  let serverStream: Stream | undefined;
  await withPair({}, { onStream: (s) => (serverStream = s) }, async ({ client, server, c2s }) => {
    const r = new Recorder(client.request(request("/slow", "GET"), true));
    await until(() => serverStream !== undefined, 2000, "the request");
    let closed = false;
    void client.closed.then(() => (closed = true));
    client.close();
    assert.equal(client.usable, false);
    assert.throws(() => client.request(request("/late")));
    for (let i = 0; i < 5; i++) await tick();
    const goaway = c2s.log.goaway();
    assert.deepEqual(goaway && { code: goaway.code, lastStreamId: goaway.lastStreamId }, {
      code: ErrorCode.NO_ERROR,
      lastStreamId: 0,
    });
    assert.equal(closed, false, "closed resolved with a stream still open");

    serverStream!.respond([[":status", "200"]]);
    serverStream!.write(te.encode("late but whole"));
    serverStream!.end();
    assert.equal(await within(r.closed, 2000, "the stream"), 0);
    assert.equal(r.text(), "late but whole");
    const err = await within(client.closed, 2000, "client.closed");
    assert.equal(err.code, ErrorCode.NO_ERROR);
    assert.equal((await within(server.closed, 2000, "server.closed")).code, ErrorCode.NO_ERROR);
    assert.equal(c2s.closed, true, "the client closed its transport");
  });
});

Deno.test("a server ending its response while the client still sends closes with RST_STREAM NO_ERROR", async () => {
  await withPair({}, {
    onStream: (s) => {
      if (s.headers?.find(([n]) => n === ":path")?.[1] === "/again") return echo(s);
      s.respond([[":status", "413"]]);
      s.write(te.encode("too much"));
      s.end();
    },
  }, async ({ client, server, s2c }) => {
    const s = client.request(request("/upload"));
    const r = new Recorder(s);
    s.write(pattern(4 * MiB));
    assert.equal(await within(r.closed, 2000, "onClose"), 0);
    assert.deepEqual(r.events, ["response", "data", "end", "close 0"]);
    assert.equal(r.text(), "too much");
    assert.equal(s.bufferedAmount, 0, "what the client still had to send is dropped");
    assert.deepEqual(s2c.log.resets(1), [ErrorCode.NO_ERROR]);
    assert.equal(server.streamCount, 0);
    assert.equal(client.streamCount, 0);

    // The DATA still in flight to the server did not break the connection.
    const again = client.request(request("/again"));
    const ra = new Recorder(again);
    again.write(te.encode("still there?"));
    again.end();
    assert.equal(await within(ra.closed, 2000, "a second request"), 0);
    assert.equal(ra.text(), "still there?");
    assert.equal(s2c.log.goaway(), undefined);
  });
});

Deno.test("a client opening 5 streams to a server allowing 2 queues the rest, and all 5 complete", async () => {
  let open = 0;
  let most = 0;
  await withPair({}, {
    maxConcurrentStreams: 2,
    onStream: (s) => {
      most = Math.max(most, ++open);
      s.onEnd = async () => {
        await tick(); // hold the stream open a little, so the limit is reached
        s.respond([[":status", "200"]]);
        s.write(te.encode(s.headers!.find(([n]) => n === ":path")![1]));
        s.end();
        open--;
      };
    },
  }, async ({ client, s2c }) => {
    await within(client.ping(), 2000, "the SETTINGS exchange"); // the server's SETTINGS arrived before its PING ACK
    const rs = [1, 2, 3, 4, 5].map((i) => {
      const s = client.request(request(`/${i}`));
      s.write(te.encode(`body ${i}`));
      s.end();
      return new Recorder(s);
    });
    const codes = await within(Promise.all(rs.map((r) => r.closed)), 5000, "5 streams");
    assert.deepEqual(codes, [0, 0, 0, 0, 0]);
    assert.deepEqual(rs.map((r) => r.text()), ["/1", "/2", "/3", "/4", "/5"]);
    assert.ok(most <= 2, `the server saw ${most} streams at once`);
    assert.deepEqual(s2c.log.of(FrameType.RST_STREAM).map((f) => readU32(f.payload, 0)), []);
  });
});

// The peer's MAX_CONCURRENT_STREAMS is unlimited until its SETTINGS arrive (RFC 9113 section 5.1.2): a client that
// opens streams at once sends them all (no round trip of waiting), and the server refuses those past its limit with
// REFUSED_STREAM, which the client reports on exactly those streams; the others complete.
Deno.test("streams opened before the server's SETTINGS: those past its limit are refused, others complete", async () => {
  await withPair({}, {
    maxConcurrentStreams: 2,
    onStream: (s) => {
      s.onEnd = async () => {
        await tick();
        s.respond([[":status", "200"]], true);
      };
    },
  }, async ({ client }) => {
    const rs = [1, 2, 3, 4, 5].map((i) => new Recorder(client.request(request(`/${i}`), true)));
    const codes = await within(Promise.all(rs.map((r) => r.closed)), 5000, "5 streams");
    assert.deepEqual(codes.map(errorName), [
      "NO_ERROR",
      "NO_ERROR",
      "REFUSED_STREAM",
      "REFUSED_STREAM",
      "REFUSED_STREAM",
    ]);
    // The connection is still good: a stream opened now, with the limit known, completes.
    const again = new Recorder(client.request(request("/6"), true));
    assert.equal(errorName(await within(again.closed, 5000, "stream 6")), "NO_ERROR");
  });
});

// DATA delivered to an onData that closed its stream (reset) was never credited to the connection window.
Deno.test("a client resetting streams from onData still gets data on later streams (window returned)", async () => {
  await withPair({ connectionWindow: 256 * KiB }, {
    onStream: (s) => {
      s.respond([[":status", "200"]]);
      s.write(pattern(32 * KiB));
      s.end();
    },
  }, async ({ client }) => {
    // 16 x 32 KiB is twice the client's connection window: each must be credited back for the next to arrive.
    for (let i = 0; i < 16; i++) {
      const s = client.request(request(`/${i}`, "GET"), true);
      const r = new Recorder(s);
      s.onData = (c) => {
        r.received += c.length;
        s.reset(); // e.g. the reader found what it wanted
      };
      await within(r.closed, 2000, `stream ${i}'s first DATA`);
      assert.equal(r.received, 32 * KiB, `stream ${i}`);
    }
  });
});

// The connection window starts at 65,535 and no SETTINGS lowers it (RFC 9113 section 6.9.2): a smaller option can
// only make a peer that keeps to the rules overrun what we count.
Deno.test("a connectionWindow under 65,535 still accepts the 65,535 bytes a peer may send at first", async () => {
  let got = 0;
  await withPair({}, {
    connectionWindow: 16 * KiB,
    onStream: (s) => {
      s.onData = (c) => (got += c.length);
      s.onEnd = () => s.respond([[":status", "200"]], true);
    },
  }, async ({ client, s2c }) => {
    // After the SETTINGS exchange the client may send 65,535 bytes in one frame (our MAX_FRAME_SIZE is 128 KiB).
    await within(client.ping(), 2000, "the SETTINGS exchange");
    const s = client.request(request("/"));
    const r = new Recorder(s);
    s.write(pattern(65_535));
    s.end();
    const code = await within(Promise.race([r.closed, client.closed.then((e) => e.code)]), 2000, "the upload");
    assert.equal(s2c.log.goaway()?.code, undefined, `server sent GOAWAY ${s2c.log.goaway()?.debug}`);
    assert.equal(code, 0);
    assert.equal(got, 65_535);
  });
});

// ------------------------------------------------------------------------------------------------ malformed input

/** Test double: a transport that keeps what the connection wrote, parsed into frames, and whether it was closed. */
class RecordingTransport implements Transport {
  readonly log = new FrameLog(false);
  readonly buffered = 0;
  closed = false;

  write(bytes: Uint8Array): void {
    this.log.add(bytes);
  }

  close(): void {
    this.closed = true;
  }
}

/** HPACK for POST http://tp.test/: indexed :method POST (3), :scheme http (6), :path / (4), then :authority as a
 *  literal without indexing on static name 1, 7 raw octets "tp.test" (RFC 7541 sections 6.1 and 6.2.2). */
const POST_BLOCK = hex("838684" + "01" + "07" + "74702e74657374");
const POST_HEADERS: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/"], [":authority", "tp.test"]];
/** What a client sends first: the preface, its SETTINGS (none changed) and the ACK of ours. */
const OPENING = concat([PREFACE, settingsFrame([]), frame(FrameType.SETTINGS, Flag.ACK, 0)]);

const headersFrame = (id: number, endStream = false, block = POST_BLOCK) =>
  frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), id, block);
const dataFrame = (id: number, payload: Uint8Array, endStream = false) =>
  frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, id, payload);

/** A server Connection over a RecordingTransport. */
function serverUnderTest(options: ConnectionOptions = {}): { server: Connection; t: RecordingTransport } {
  const t = new RecordingTransport();
  return { server: new Connection("server", t, options), t };
}

/** Feeds `bytes` to a fresh server and returns the GOAWAY it wrote; checks it closed its transport and `closed`. */
async function connectionError(bytes: Uint8Array, options: ConnectionOptions = {}) {
  const { server, t } = serverUnderTest(options);
  server.receive(bytes);
  await tick();
  const err = await within(server.closed, 1000, "server.closed");
  const goaway = t.log.goaway();
  assert.ok(goaway, "a GOAWAY was written");
  assert.equal(err.code, goaway.code, "closed resolves with the GOAWAY's code");
  assert.equal(t.closed, true, "the transport was closed");
  assert.equal(server.usable, false);
  return goaway;
}

Deno.test("a server Connection writes its SETTINGS first and ACKs the client's", async () => {
  const { server, t } = serverUnderTest({ maxConcurrentStreams: 7, streamWindow: 12345 });
  server.receive(concat([PREFACE, settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 1000]])]));
  await tick();
  const [first, second] = t.log.frames;
  assert.equal(first?.type, FrameType.SETTINGS);
  assert.equal(first.flags, 0);
  assert.deepEqual(parseSettings(first.payload), [
    [Setting.INITIAL_WINDOW_SIZE, 12345],
    [Setting.MAX_FRAME_SIZE, 128 * KiB],
    [Setting.MAX_CONCURRENT_STREAMS, 7],
  ]);
  assert.deepEqual(second && { type: second.type, streamId: second.streamId }, {
    type: FrameType.WINDOW_UPDATE,
    streamId: 0,
  });
  assert.ok(t.log.frames.some((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK && f.payload.length === 0));
  server.destroy();
});

Deno.test("a server accepts the preface and frames one byte at a time", async () => {
  let seen: Stream | undefined;
  const { server, t } = serverUnderTest({ onStream: (s) => (seen = s) });
  const bytes = concat([OPENING, headersFrame(1, true), pingFrame(hex("0001020304050607"), false)]);
  for (let i = 0; i < bytes.length; i++) server.receive(bytes.subarray(i, i + 1));
  await tick();
  assert.deepEqual(seen?.headers, POST_HEADERS);
  assert.equal(t.log.of(FrameType.PING).length, 1);
  assert.equal(t.log.goaway(), undefined);
  server.destroy();
});

Deno.test("a bad preface gets GOAWAY PROTOCOL_ERROR and the transport closed", async () => {
  const goaway = await connectionError(te.encode("GET / HTTP/1.1\r\nHost: tp.test\r\n\r\n"));
  assert.equal(goaway.code, ErrorCode.PROTOCOL_ERROR);
  assert.equal(goaway.lastStreamId, 0);
  // A preface that goes wrong only after a matching start fails as well.
  const late = await connectionError(te.encode("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"));
  assert.equal(late.code, ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a first frame that is not SETTINGS gets GOAWAY PROTOCOL_ERROR", async () => {
  const goaway = await connectionError(concat([PREFACE, pingFrame(new Uint8Array(8), false)]));
  assert.equal(goaway.code, ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a frame over our MAX_FRAME_SIZE gets GOAWAY FRAME_SIZE_ERROR before its payload arrived", async () => {
  // Only the header of a DATA frame of 128 KiB + 1 (0x020001) on stream 1: the length alone condemns it.
  const header = hex("020001" + "00" + "00" + "00000001");
  const goaway = await connectionError(concat([OPENING, headersFrame(1), header]));
  assert.equal(goaway.code, ErrorCode.FRAME_SIZE_ERROR);
  const small = await connectionError(concat([OPENING, headersFrame(1), dataFrame(1, new Uint8Array(16_385))]), {
    maxFrameSize: 16_384,
  });
  assert.equal(small.code, ErrorCode.FRAME_SIZE_ERROR);
  assert.equal(small.lastStreamId, 1);
});

Deno.test("DATA on stream 0 gets GOAWAY PROTOCOL_ERROR", async () => {
  const goaway = await connectionError(concat([OPENING, dataFrame(0, te.encode("hi"))]));
  assert.equal(goaway.code, ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a WINDOW_UPDATE taking the connection window over 2^31-1 gets GOAWAY FLOW_CONTROL_ERROR", async () => {
  const goaway = await connectionError(concat([OPENING, windowUpdateFrame(0, 0x7fffffff)]));
  assert.equal(goaway.code, ErrorCode.FLOW_CONTROL_ERROR);
});

Deno.test("a malformed HPACK block gets GOAWAY COMPRESSION_ERROR", async () => {
  // An indexed field with index 0 (RFC 7541 section 6.1).
  const zero = await connectionError(concat([OPENING, headersFrame(1, true, hex("8286" + "80"))]));
  assert.equal(zero.code, ErrorCode.COMPRESSION_ERROR);
  // A dynamic table index (62) while the table is empty.
  const empty = await connectionError(concat([OPENING, headersFrame(1, true, hex("be"))]));
  assert.equal(empty.code, ErrorCode.COMPRESSION_ERROR);
  // A literal whose string runs past the block.
  const cut = await connectionError(concat([OPENING, headersFrame(1, true, hex("0107" + "7470"))]));
  assert.equal(cut.code, ErrorCode.COMPRESSION_ERROR);
});

Deno.test("a header block that never ends (CONTINUATION without END_HEADERS) is cut off with ENHANCE_YOUR_CALM", async () => {
  const part = new Uint8Array(16 * KiB).fill(0x40); // never decoded: the block is never complete
  const frames = [OPENING, frame(FrameType.HEADERS, 0, 1, part)];
  for (let i = 0; i < 20; i++) frames.push(frame(FrameType.CONTINUATION, 0, 1, part)); // 336 KiB in all
  const goaway = await connectionError(concat(frames));
  assert.equal(goaway.code, ErrorCode.ENHANCE_YOUR_CALM);
});

Deno.test("DATA past a stream's window resets it with FLOW_CONTROL_ERROR; another stream keeps working", async () => {
  const streams = new Map<number, Recorder>();
  const { server, t } = serverUnderTest({
    streamWindow: 16 * KiB,
    onStream: (s) => {
      const r = new Recorder(s);
      streams.set(s.id, r);
      s.onEnd = () => {
        r.events.push("end");
        s.respond([[":status", "200"]]);
        s.write(te.encode(`got ${r.received}`));
        s.end();
      };
    },
  });
  server.receive(concat([
    OPENING,
    headersFrame(1),
    headersFrame(3),
    dataFrame(1, new Uint8Array(16 * KiB + 1)), // one byte past the window we announced and the client ACKed
    dataFrame(3, new Uint8Array(100), true),
  ]));
  await tick();
  assert.deepEqual(t.log.resets(1), [ErrorCode.FLOW_CONTROL_ERROR]);
  assert.equal(streams.get(1)?.closeCode, ErrorCode.FLOW_CONTROL_ERROR);
  assert.equal(streams.get(1)?.received, 0, "the offending frame is not delivered");
  assert.deepEqual(streams.get(3)?.events, ["data", "end", "close 0"]);
  assert.deepEqual(t.log.resets(3), []);
  assert.equal(t.log.of(FrameType.HEADERS, 3).length, 1, "stream 3 was answered");
  assert.equal(td.decode(t.log.of(FrameType.DATA, 3)[0]?.payload), "got 100");
  assert.equal(t.log.goaway(), undefined);
  assert.equal(server.usable, true);
  // Stream 1's DATA still in flight is ignored, and the connection takes new streams.
  server.receive(concat([dataFrame(1, new Uint8Array(10)), headersFrame(5), dataFrame(5, new Uint8Array(5), true)]));
  await tick();
  assert.deepEqual(streams.get(5)?.events, ["data", "end", "close 0"]);
  assert.equal(t.log.goaway(), undefined);
  server.destroy();
});

Deno.test("a PING is answered with an ACK carrying the same 8 bytes", async () => {
  const { server, t } = serverUnderTest();
  const data = hex("0123456789abcdef");
  server.receive(concat([OPENING, pingFrame(data, false)]));
  await tick();
  const pings = t.log.of(FrameType.PING);
  assert.equal(pings.length, 1);
  assert.equal(pings[0]!.flags, Flag.ACK);
  assert.equal(pings[0]!.streamId, 0);
  assert.deepEqual(pings[0]!.payload, data);
  // A PING ACK we did not ask for is not answered.
  server.receive(pingFrame(data, true));
  await tick();
  assert.equal(t.log.of(FrameType.PING).length, 1);
  server.destroy();
});

Deno.test("frames of unknown types are ignored, on the connection and on streams", async () => {
  let seen: Recorder | undefined;
  const { server, t } = serverUnderTest({ onStream: (s) => (seen = new Recorder(s)) });
  server.receive(concat([
    OPENING,
    frame(0xfa, 0xff, 0, hex("deadbeef")),
    headersFrame(1),
    frame(0x20, 0, 1, new Uint8Array(1000)),
    frame(0xbb, 0, 99, new Uint8Array(0)), // even on a stream that was never opened
    dataFrame(1, te.encode("body"), true),
    pingFrame(new Uint8Array(8), false),
  ]));
  await tick();
  assert.equal(t.log.goaway(), undefined);
  assert.equal(seen?.text(), "body");
  assert.equal(seen?.ended, true);
  assert.equal(t.log.of(FrameType.PING).length, 1);
  assert.equal(server.usable, true);
  server.destroy();
});

// ------------------------------------------------------------------------------------------------ interop

/** A node:http2 h2c server on 127.0.0.1 and an ephemeral port. */
async function nodeServer(onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void) {
  const server = http2.createServer();
  server.on("stream", onStream);
  await within(new Promise<void>((r) => server.listen(0, "127.0.0.1", r)), 2000, "node:http2 to listen");
  const address = server.address();
  assert.ok(address && typeof address === "object");
  return { server, port: address.port };
}

/** Our server: a Connection per accepted Deno connection; `stop()` closes the listener and every connection. */
function ourServer(onStream: (s: Stream) => void) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Connection[] = [];
  const runs: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const t = new ConnTransport(conn);
        const c = new Connection("server", t, { onStream });
        connections.push(c);
        runs.push(t.run(c));
      }
    } catch {
      // the listener was closed
    }
  })();
  return {
    port: listener.addr.port,
    connections,
    async stop() {
      listener.close();
      await within(accepting, 2000, "the accept loop to end");
      for (const c of connections) c.close();
      await within(Promise.all(connections.map((c) => c.closed)), 5000, "our server's connections to close");
      await within(Promise.all(runs), 5000, "our server's transports to end");
    },
  };
}

Deno.test("our client gets a 1 MiB POST echoed by node:http2's server, and node's trailers in onTrailers", async () => {
  const { server, port } = await nodeServer((stream, headers) => {
    stream.respond({ ":status": 200, "x-path": String(headers[":path"]) }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "x-node-trailer": "yes" }));
    stream.pipe(stream); // echo, then end (which asks for the trailers)
  });
  const transport = new ConnTransport(Deno.connect({ hostname: "127.0.0.1", port }));
  const client = new Connection("client", transport);
  const running = transport.run(client);
  try {
    const body = pattern(MiB, 11);
    const s = client.request(request("/echo"));
    const r = new Recorder(s);
    for (let off = 0; off < body.length; off += 64 * KiB) s.write(body.slice(off, off + 64 * KiB));
    s.end();
    assert.equal(await within(r.closed, 10_000, "node's echo"), 0);
    assert.equal(r.headers?.find(([n]) => n === ":status")?.[1], "200");
    assert.equal(r.headers?.find(([n]) => n === "x-path")?.[1], "/echo");
    assertSameBytes(r.body(), body, "echoed body");
    assert.deepEqual(r.trailers, [["x-node-trailer", "yes"]]);
    assert.deepEqual(r.events, ["response", "data", "trailers", "end", "close 0"]);
    assert.ok((await within(client.ping(), 2000, "node's PING ACK")) >= 0);
  } finally {
    client.close();
    await within(client.closed, 2000, "our client to close");
    await within(running, 2000, "our client's transport to end");
    await within(new Promise<void>((r) => server.close(() => r())), 5000, "node:http2's server to close");
  }
});

Deno.test("node:http2's client gets 50 concurrent requests with bodies answered by our server", async () => {
  const ours = ourServer((s) => {
    const chunks: Uint8Array[] = [];
    s.onData = (c) => chunks.push(c);
    s.onEnd = () => {
      const path = s.headers!.find(([n]) => n === ":path")![1];
      s.respond([[":status", "200"], ["x-path", path]]);
      s.write(te.encode(`${path}:`));
      s.write(concat(chunks));
      s.end();
    };
  });
  const session = http2.connect(`http://127.0.0.1:${ours.port}`);
  try {
    await within(new Promise<void>((r, j) => session.once("connect", () => r()).once("error", j)), 2000, "connect");
    const one = (i: number) =>
      new Promise<{ status: number; path: string; body: Uint8Array; sent: Uint8Array }>((resolve, reject) => {
        const sent = pattern(1000 + 997 * i, i + 1);
        const req = session.request({ ":method": "POST", ":path": `/r${i}` });
        const chunks: Uint8Array[] = [];
        let status = 0;
        let path = "";
        req.on("response", (h) => {
          status = Number(h[":status"]);
          path = String(h["x-path"]);
        });
        req.on("data", (c: Uint8Array) => chunks.push(c));
        req.on("end", () => resolve({ status, path, body: concat(chunks), sent }));
        req.on("error", reject);
        req.end(sent);
      });
    const results = await within(Promise.all(Array.from({ length: 50 }, (_, i) => one(i))), 10_000, "50 responses");
    results.forEach((r, i) => {
      assert.equal(r.status, 200, `request ${i}`);
      assert.equal(r.path, `/r${i}`);
      assertSameBytes(r.body, concat([te.encode(`/r${i}:`), r.sent]), `response ${i}`);
    });
    assert.equal(ours.connections.length, 1, "one connection carried them all");
  } finally {
    await within(new Promise<void>((r) => session.close(() => r())), 5000, "node's session to close");
    await ours.stop();
  }
});

const curlHasHttp2 = (() => {
  try {
    const out = new Deno.Command("curl", { args: ["--version"], stdout: "piped", stderr: "null" }).outputSync();
    return out.success && /\bHTTP2\b/.test(td.decode(out.stdout));
  } catch {
    return false;
  }
})();

Deno.test({
  name: "curl --http2-prior-knowledge gets its POST body echoed by our server",
  ignore: !curlHasHttp2,
  async fn() {
    const ours = ourServer(echo);
    const file = await Deno.makeTempFile({ prefix: "tp_h2_curl_" });
    try {
      const body = pattern(300 * KiB, 5);
      await Deno.writeFile(file, body);
      // --data-binary rather than -d, which would strip CR and LF bytes from the file.
      const child = new Deno.Command("curl", {
        args: ["-sS", "--http2-prior-knowledge", "--data-binary", `@${file}`, `http://127.0.0.1:${ours.port}/x`],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const out = await child.output().finally(() => clearTimeout(killer));
      assert.equal(out.success, true, `curl failed: ${td.decode(out.stderr)}`);
      assertSameBytes(out.stdout, body, "curl's response body");
    } finally {
      await Deno.remove(file);
      await ours.stop();
    }
  },
});
