import assert from "node:assert/strict";
import { type Stream } from "./connection.ts";
import { ErrorCode, errorName, Flag, FrameType, readU32 } from "./frame.ts";
import {
  assertSameBytes,
  echo,
  KiB,
  MiB,
  pattern,
  Recorder,
  request,
  te,
  tick,
  until,
  within,
  withPair,
} from "./_connection_fixture.ts";

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
