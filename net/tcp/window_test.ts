/**
 * Regression: the scaled receive window used to be rounded up to the scale unit, so a peer that filled the window
 * we advertised could put more bytes in flight than the receive buffer holds: a RangeError from the receive ring
 * ("Ring write to 1048703 exceeds limit 1048577" with the seed below). `_output.ts` now rounds down, as Linux's
 * tcp_select_window() does, and `_input.ts` clamps the acceptable window to the buffer's free space.
 */
import assert from "node:assert/strict";
import { established, PEER_ISN } from "./_fixtures.ts";
import { seqAdd, seqDiff } from "./seq.ts";

Deno.test("RFC 7323 2.3: a peer always filling our scaled window to its right edge never overflows the receive buffer", () => {
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let trial = 0; trial < 20; trial++) {
    // A limit that is not a multiple of the scale unit, so a rounded-up window promises too much.
    const scale = 1 + random(8);
    const limit = (0xffff << (scale - 1)) + 1 + random(1 << scale);
    const h = established({ recvBufferLimit: limit, mss: 1460 }, { windowScale: 7, mss: 1460 });
    const shift = h.conn.info().rcvScale;
    let edge = seqAdd(PEER_ISN, 1 + Math.min(limit, 0xffff)); // the SYN-ACK's window is not scaled
    let filled = 0;
    for (let round = 0; round < 60; round++) {
      // The peer sends segments of random sizes up to the right edge of the largest window we advertised.
      for (let i = 0; i < 5000 && seqDiff(edge, h.peerNxt) > 0; i++) {
        h.data(Math.min(1 + random(1460), seqDiff(edge, h.peerNxt)));
      }
      h.advance(50); // the delayed ACK
      for (const s of h.take()) {
        const right = seqAdd(s.ack, s.window << shift);
        if (seqDiff(right, edge) > 0) edge = right;
      }
      const held = h.conn.readable;
      assert.ok(held <= limit, `trial ${trial} round ${round}: ${held} bytes held, limit ${limit}`);
      filled = Math.max(filled, held);
      // The owner consumes a random amount, or nothing, so that the free space is rarely a multiple of the unit.
      if (random(3) !== 0) h.conn.consume(Math.min(held, random(limit)));
      h.poll();
    }
    assert.ok(filled > limit - 4 * 1460, `trial ${trial}: the peer did fill the buffer (${filled} of ${limit})`);
  }
});

Deno.test("RFC 9293 3.10.7.4: a peer's bare ACK at the furthest edge we advertised is heard while our window is closed", () => {
  // Rounding the scaled window down can pull our right edge in by less than one scale unit after the peer sent up to
  // it. The peer's later ACKs carry seq = its SND.NXT, past the pulled-in edge: if they were dropped while our window
  // is closed (the owner not reading), our own data would never be acknowledged and both sides would wait forever.
  let seed = 11;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let trial = 0; trial < 20; trial++) {
    const scale = 1 + random(6);
    const limit = (0xffff << (scale - 1)) + 1 + random(1 << scale);
    const h = established({ recvBufferLimit: limit, mss: 1460 }, { windowScale: 7, mss: 1460 });
    const shift = h.conn.info().rcvScale;
    let edge = seqAdd(PEER_ISN, 1 + Math.min(limit, 0xffff));
    // The peer fills whatever we advertise, in segments of odd sizes, and the owner never reads.
    for (let round = 0; round < 200 && h.conn.readable < limit - 1460; round++) {
      if (seqDiff(edge, h.peerNxt) > 0) h.data(Math.min(1 + random(1460), seqDiff(edge, h.peerNxt)));
      h.advance(50);
      for (const s of h.take()) {
        const right = seqAdd(s.ack, s.window << shift);
        if (seqDiff(right, edge) > 0) edge = right;
      }
    }
    while (seqDiff(edge, h.peerNxt) > 0) h.data(Math.min(1460, seqDiff(edge, h.peerNxt)));
    h.take();
    // Now we send, and the peer acknowledges it with a bare ACK at its SND.NXT.
    assert.equal(h.conn.write(new Uint8Array(100)), 100);
    h.poll();
    const ours = h.take().find((s) => s.payload.length > 0);
    assert.ok(ours, "our data went out");
    h.peerAck = seqAdd(ours.seq, 100);
    h.send();
    assert.equal(h.conn.info().sndUna, h.peerAck, `trial ${trial}: the peer's ACK was heard`);
  }
});
