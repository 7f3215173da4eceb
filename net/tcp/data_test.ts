import assert from "node:assert/strict";
import { ACK, bytes, established, FIN, Harness, OUR_ISN, PEER_ISN, synHeld } from "./_fixtures.ts";
import { TcpEvent } from "./options.ts";
import { seqAdd } from "./seq.ts";

const DATA0 = seqAdd(OUR_ISN, 1);
const PEER0 = seqAdd(PEER_ISN, 1);

function readAll(h: Harness): Uint8Array {
  const out = new Uint8Array(h.conn.readable);
  assert.equal(h.conn.readInto(out), out.length);
  return out;
}

Deno.test("RFC 9293 3.10.7.4 seventh: in-order data becomes readable; the ACK is delayed (RFC 1122 4.2.3.2)", () => {
  const h = established();
  const sent = h.data(500);
  assert.deepEqual(h.take(), []);
  assert.ok(h.takeEvents() & TcpEvent.Readable);
  assert.deepEqual(h.conn.peek(), sent);
  h.advance(39);
  assert.deepEqual(h.take(), []);
  h.advance(1);
  const a = h.one();
  assert.equal(a.flags, ACK);
  assert.equal(a.ack, seqAdd(PEER0, 500));
});

Deno.test("RFC 5681 4.2: every second full-sized segment is acknowledged at once", () => {
  const h = established();
  h.data(1000);
  assert.deepEqual(h.take(), []);
  h.data(1000);
  assert.equal(h.one().ack, seqAdd(PEER0, 2000));
});

Deno.test("RFC 5681 4.2 / RFC 2018 3: an out-of-order segment draws an immediate duplicate ACK with SACK blocks", () => {
  const h = established();
  const first = bytes(1000, 1);
  const second = bytes(1000, 2);
  h.send({ seq: seqAdd(PEER0, 1000), payload: second });
  const d = h.one();
  assert.equal(d.ack, PEER0);
  assert.deepEqual(d.sackBlocks, [[seqAdd(PEER0, 1000), seqAdd(PEER0, 2000)]]);
  assert.equal(h.conn.readable, 0);
  assert.equal(h.conn.counters.outOfOrderSegments, 1);
  // Filling the hole is acknowledged at once and everything becomes readable, in order.
  h.send({ seq: PEER0, payload: first });
  const a = h.one();
  assert.equal(a.ack, seqAdd(PEER0, 2000));
  assert.equal(a.sackBlocks, undefined);
  const got = readAll(h);
  assert.deepEqual(got.subarray(0, 1000), first);
  assert.deepEqual(got.subarray(1000), second);
});

Deno.test("RFC 2018 4: the first SACK block holds the most recently received segment", () => {
  const h = established({ recvBufferLimit: 20000 });
  h.send({ seq: seqAdd(PEER0, 1000), payload: bytes(500) });
  h.send({ seq: seqAdd(PEER0, 3000), payload: bytes(500) });
  h.take();
  h.send({ seq: seqAdd(PEER0, 5000), payload: bytes(500) });
  const blocks = h.one().sackBlocks!;
  assert.deepEqual(blocks[0], [seqAdd(PEER0, 5000), seqAdd(PEER0, 5500)]);
  assert.equal(blocks.length, 3);
  // Extending an older block moves it to the front.
  h.send({ seq: seqAdd(PEER0, 1500), payload: bytes(500) });
  assert.deepEqual(h.one().sackBlocks![0], [seqAdd(PEER0, 1000), seqAdd(PEER0, 2000)]);
});

Deno.test("RFC 9293 3.8.6: the window closes while the owner does not consume, down to zero", () => {
  const h = established(); // 8000-byte receive buffer, no scaling
  const windows: number[] = [];
  for (let i = 0; i < 8; i++) {
    h.data(1000);
    for (const s of h.take()) windows.push(s.window);
  }
  assert.deepEqual(windows, [6000, 4000, 2000, 0]);
  // Data beyond a zero window is dropped and acknowledged with the same edge.
  h.data(100);
  const a = h.one();
  assert.equal(a.window, 0);
  assert.equal(a.ack, seqAdd(PEER0, 8000));
  assert.equal(h.conn.readable, 8000);
});

Deno.test("RFC 9293 3.8.6.2.2: consuming after a zero window sends a window update once it is worth an MSS", () => {
  const h = established();
  for (let i = 0; i < 8; i++) h.data(1000);
  h.take();
  h.conn.consume(500); // less than an MSS: no update (receiver-side SWS avoidance)
  h.poll();
  assert.deepEqual(h.take(), []);
  h.conn.consume(1500);
  h.poll();
  const u = h.one();
  assert.equal(u.window, 2000);
  assert.equal(u.ack, seqAdd(PEER0, 8000));
  assert.equal(h.conn.counters.windowUpdates, 1);
});

Deno.test("RFC 9293 3.10.7.4 first: a segment that is entirely old draws an ACK and is not delivered twice", () => {
  const h = established();
  h.data(1000);
  h.data(1000);
  h.take();
  h.send({ seq: PEER0, payload: bytes(1000) });
  assert.equal(h.one().ack, seqAdd(PEER0, 2000));
  assert.equal(h.conn.readable, 2000);
  assert.equal(h.conn.counters.outOfWindow, 1);
});

Deno.test("RFC 9293 3.10.7.4 first: a segment overlapping RCV.NXT is trimmed to its new bytes", () => {
  const h = established();
  const a = h.data(600);
  const b = bytes(1000, 9);
  h.send({ seq: seqAdd(PEER0, 100), payload: b });
  const got = readAll(h);
  assert.equal(got.length, 1100);
  assert.deepEqual(got.subarray(0, 600), a);
  assert.deepEqual(got.subarray(600), b.subarray(500));
});

Deno.test("write() returns how much the send buffer took, and Writable follows the ACK that frees space", () => {
  const h = established({ sendBufferLimit: 3000 });
  assert.equal(h.conn.write(bytes(5000)), 3000);
  assert.equal(h.conn.writable, 0);
  h.poll();
  const segs = h.take();
  assert.deepEqual(segs.map((s) => s.payload.length), [1000, 1000, 1000]);
  h.takeEvents();
  h.send({ ack: seqAdd(DATA0, 1000) });
  assert.ok(h.takeEvents() & TcpEvent.Writable);
  assert.equal(h.conn.writable, 1000);
});

Deno.test("Nagle is off: small writes coalesce until poll() and a short tail goes out at once", () => {
  const h = established();
  for (let i = 0; i < 25; i++) h.conn.write(bytes(100, i));
  h.poll();
  const segs = h.take();
  assert.deepEqual(segs.map((s) => s.payload.length), [1000, 1000, 500]);
  assert.equal(segs[0]!.seq, DATA0);
  assert.equal(segs[2]!.seq, seqAdd(DATA0, 2000));
});

Deno.test("RFC 5681 3.1 / RFC 6928: the first flight is limited by the initial window", () => {
  const h = established({ mss: 1000, sendBufferLimit: 100000 }); // IW = min(10*MSS, max(2*MSS, 14600)) = 10000
  h.conn.write(bytes(50000));
  h.poll();
  assert.equal(h.take().length, 10);
  // Slow start: the ACK of 2000 bytes lets 2000 + 2000 more out.
  h.send({ ack: seqAdd(DATA0, 2000) });
  assert.equal(h.take().length, 4);
});

Deno.test("RFC 7323 2.3: the peer's window is scaled by its shift count and limits what we send", () => {
  const h = established({ sendBufferLimit: 100000 }, { windowScale: 2 });
  h.send({ window: 1000 }); // 4000 bytes
  assert.equal(h.conn.info().sndWnd, 4000);
  h.conn.write(bytes(10000));
  h.poll();
  assert.deepEqual(h.take().map((s) => s.payload.length), [1000, 1000, 1000, 1000]);
});

Deno.test("RFC 9293 3.8.6.1: a zero window starts the persist timer; probes back off until the window opens", () => {
  const h = established();
  h.send({ window: 0 });
  h.conn.write(bytes(3000));
  h.poll();
  assert.deepEqual(h.take(), []);
  const probes: number[] = [];
  for (let i = 0; i < 3; i++) {
    h.fire();
    const p = h.one();
    assert.equal(p.seq, seqAdd(DATA0, -1)); // an old sequence number forces an ACK with the window
    assert.equal(p.payload.length, 0);
    probes.push(h.now);
    h.send({ window: 0 }); // the peer's answer: still closed
    assert.deepEqual(h.take(), []);
  }
  assert.deepEqual(probes, [200, 600, 1400]); // RTO 200 ms (the handshake measured 0 ms), doubling
  assert.equal(h.conn.counters.zeroWindowProbes, 3);
  h.send({ window: 5000 });
  assert.deepEqual(h.take().map((s) => s.payload.length), [1000, 1000, 1000]);
  assert.equal(h.conn.state, "ESTABLISHED");
});

Deno.test("our zero window still takes the peer's ACKs, and a bare FIN (RFC 9293 3.10.7.4, as Linux does)", () => {
  const h = established();
  for (let i = 0; i < 8; i++) h.data(1000);
  h.conn.write(bytes(10));
  h.poll();
  h.take();
  h.send({ ack: seqAdd(DATA0, 10) });
  assert.equal(h.conn.info().unackedBytes, 0);
  h.data(0, FIN);
  assert.equal(h.conn.state, "CLOSE-WAIT");
  assert.ok(h.takeEvents() & TcpEvent.PeerFin);
  assert.equal(h.conn.eof, false);
  h.conn.consume(8000);
  assert.equal(h.conn.eof, true);
});

Deno.test("data that wraps the send ring goes out in whole segments", () => {
  const h = established({ sendBufferLimit: 2500 });
  h.conn.write(bytes(2500));
  h.poll();
  h.send({ ack: seqAdd(DATA0, 2500) });
  h.take();
  const next = bytes(2500, 77);
  assert.equal(h.conn.write(next), 2500);
  h.poll();
  const segs = h.take();
  assert.deepEqual(segs.map((s) => s.payload.length), [1000, 1000, 500]);
  assert.deepEqual(segs[0]!.payload, next.subarray(0, 1000));
  assert.deepEqual(segs[1]!.payload, next.subarray(1000, 2000));
});

Deno.test("the owner may write before accepting: the data follows the handshake", () => {
  const h = synHeld();
  assert.equal(h.conn.write(bytes(300)), 300);
  h.conn.accept();
  h.poll();
  h.take();
  h.send();
  const d = h.one();
  assert.equal(d.payload.length, 300);
  assert.equal(d.seq, DATA0);
});
