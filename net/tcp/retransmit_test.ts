import assert from "node:assert/strict";
import { NewReno } from "./_congestion.ts";
import { bytes, established, Harness, OUR_ISN, RST } from "./_fixtures.ts";
import { RttEstimator } from "./_rtt.ts";
import { MAX_SACK_RANGES } from "./_sack.ts";
import { TcpEvent } from "./options.ts";
import { seqAdd } from "./seq.ts";

const DATA0 = seqAdd(OUR_ISN, 1);

/** Established, with `n` bytes written and sent (MSS 1000, RTO 200 ms). */
function inFlight(n: number, opts = {}): Harness {
  const h = established({ sendBufferLimit: 100000, ...opts });
  h.conn.write(bytes(n));
  h.poll();
  return h;
}

Deno.test("RFC 6298 2.2/2.3: RTT samples set SRTT, RTTVAR and an RTO with a floor", () => {
  const r = new RttEstimator(1000, 200, 60000);
  r.sample(100);
  assert.equal(r.srtt, 100);
  assert.equal(r.rttvar, 50);
  assert.equal(r.rto, 300);
  r.sample(200);
  assert.equal(r.rttvar, 0.75 * 50 + 0.25 * 100);
  assert.equal(r.srtt, 0.875 * 100 + 0.125 * 200);
  r.sample(1);
  r.backoff();
  assert.equal(r.rto, Math.min(60000, 2 * r.rto / 2));
  for (let i = 0; i < 20; i++) r.backoff();
  assert.equal(r.rto, 60000); // RFC 6298 2.5
});

Deno.test("RFC 5681 3.1: slow start adds acknowledged bytes; congestion avoidance one MSS per window", () => {
  const cc = new NewReno(1000);
  assert.equal(cc.cwnd, 10000);
  cc.onAck(3000);
  assert.equal(cc.cwnd, 13000);
  cc.ssthresh = 13000;
  for (let i = 0; i < 12; i++) cc.onAck(1000);
  assert.equal(cc.cwnd, 13000);
  cc.onAck(1000);
  assert.equal(cc.cwnd, 14000);
  cc.onTimeout(20000, true);
  assert.equal(cc.ssthresh, 10000);
  assert.equal(cc.cwnd, 1000);
});

Deno.test("RFC 6298 5.1/5.4-5.6: an unacknowledged segment is resent after the RTO, which doubles each time", () => {
  const h = inFlight(500);
  const first = h.one();
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    h.fire();
    const s = h.one();
    assert.equal(s.seq, first.seq);
    assert.deepEqual(s.payload, first.payload);
    times.push(h.now);
  }
  assert.deepEqual(times, [200, 600, 1400, 3000]);
  assert.equal(h.conn.counters.rtoExpiries, 4);
  // RFC 6298 5.2: when everything is acknowledged the timer stops.
  h.send({ ack: seqAdd(DATA0, 500) });
  assert.equal(h.conn.nextDeadline(), Number.POSITIVE_INFINITY);
});

Deno.test("RFC 5681 3.1: after a timeout cwnd is one segment and the rest follows go-back-N as ACKs return", () => {
  const h = inFlight(5000);
  assert.equal(h.take().length, 5);
  h.fire();
  const r = h.take();
  assert.equal(r.length, 1);
  assert.equal(r[0]!.seq, DATA0);
  assert.equal(h.conn.info().cwnd, 1000);
  h.send({ ack: seqAdd(DATA0, 1000) });
  assert.deepEqual(h.take().map((s) => s.seq), [seqAdd(DATA0, 1000), seqAdd(DATA0, 2000)]);
});

Deno.test("RFC 6298 / RFC 9293 3.8.3: after maxRetries timeouts the connection is reset with the timeout error", () => {
  const h = inFlight(100, { maxRetries: 3 });
  h.take();
  for (let i = 0; i < 3; i++) {
    h.fire();
    assert.equal(h.one().payload.length, 100);
  }
  h.fire();
  assert.equal(h.one().flags & RST, RST);
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "timeout");
  assert.ok(h.takeEvents() & TcpEvent.Reset);
});

Deno.test("RFC 6298 5.3: an ACK of new data restarts the retransmission timer", () => {
  const h = inFlight(2000);
  h.take();
  h.now = 150;
  h.send({ ack: seqAdd(DATA0, 1000) });
  assert.equal(h.conn.nextDeadline(), 150 + 200);
});

Deno.test("RFC 5681 3.2: three duplicate ACKs trigger a fast retransmit; RFC 6582 halves the window", () => {
  const h = inFlight(8000);
  assert.equal(h.take().length, 8);
  h.send({ ack: seqAdd(DATA0, 1000) });
  h.take();
  for (let i = 0; i < 2; i++) h.send({ ack: seqAdd(DATA0, 1000) });
  assert.deepEqual(h.take(), []);
  h.send({ ack: seqAdd(DATA0, 1000) });
  const r = h.take();
  assert.equal(r[0]!.seq, seqAdd(DATA0, 1000));
  assert.equal(r[0]!.payload.length, 1000);
  const info = h.conn.info();
  assert.ok(info.inRecovery);
  assert.equal(info.ssthresh, (8000 - 1000) / 2); // FlightSize / 2
  assert.equal(h.conn.counters.fastRetransmits, 1);
});

Deno.test("RFC 6582 3.2 step 5: a partial ACK retransmits the next hole, a full ACK ends recovery", () => {
  const h = inFlight(6000, { sack: false });
  h.take();
  for (let i = 0; i < 3; i++) h.send({ ack: DATA0 });
  assert.equal(h.take()[0]!.seq, DATA0);
  // Partial: the hole at 2000 was lost too.
  h.send({ ack: seqAdd(DATA0, 2000) });
  const p = h.take();
  assert.equal(p[0]!.seq, seqAdd(DATA0, 2000));
  assert.ok(h.conn.info().inRecovery);
  h.send({ ack: seqAdd(DATA0, 6000) });
  const info = h.conn.info();
  assert.ok(!info.inRecovery);
  assert.equal(info.cwnd, Math.min(info.ssthresh, 1000 + 1000));
});

Deno.test("RFC 2018 / RFC 6675: in recovery, SACK holes are retransmitted and SACKed data is not", () => {
  const h = inFlight(8000, { sack: true });
  h.take();
  // Segments 0 and 3 lost; the peer SACKs 1-2 and 4-7.
  const sack = (blocks: [number, number][]) =>
    h.send({ ack: DATA0, sackBlocks: blocks.map(([l, r]) => [seqAdd(DATA0, l), seqAdd(DATA0, r)] as const) });
  sack([[1000, 2000]]);
  sack([[1000, 3000]]);
  sack([[4000, 5000], [1000, 3000]]);
  const first = h.take();
  assert.equal(first[0]!.seq, DATA0);
  sack([[4000, 6000], [1000, 3000]]);
  const second = h.take();
  assert.equal(second[0]!.seq, seqAdd(DATA0, 3000));
  assert.ok(!second.some((s) => s.seq === seqAdd(DATA0, 1000) || s.seq === seqAdd(DATA0, 4000)));
  assert.equal(h.conn.counters.retransmittedSegments, 2);
});

Deno.test("Karn's algorithm (RFC 6298 3): a retransmitted segment gives no RTT sample", () => {
  const h = inFlight(100);
  h.take();
  const before = h.conn.info().srttMs;
  h.fire();
  h.take();
  h.now = 5000;
  h.send({ ack: seqAdd(DATA0, 100) });
  assert.equal(h.conn.info().srttMs, before);
});
Deno.test("RFC 9293 3.8.4: keepalive probes an idle connection and times it out when unanswered", () => {
  const h = established({ keepalive: { idleMs: 10_000, intervalMs: 1000, probes: 2 } });
  h.fire();
  assert.equal(h.now, 10_000);
  const p = h.one();
  assert.equal(p.seq, seqAdd(p.seq, 0));
  assert.equal(p.payload.length, 0);
  // An answer resets the idle timer.
  h.send();
  assert.equal(h.conn.nextDeadline(), 20_000);
  h.fire();
  h.one();
  h.fire();
  h.one();
  h.fire();
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "timeout");
  assert.equal(h.conn.counters.keepaliveProbes, 3);
});

Deno.test("RFC 2018: SACK blocks past the scoreboard's bound are ignored and counted, and recovery goes on", () => {
  const h = inFlight(10_000, { sack: true });
  h.take();
  // 100 disjoint blocks of 50 bytes, four to an ACK (as a peer that drops every other 50 bytes might report them).
  const blocks = Array.from({ length: 100 }, (_, k) => [seqAdd(DATA0, k * 100 + 1), seqAdd(DATA0, k * 100 + 51)]);
  for (let k = 0; k < blocks.length; k += 4) {
    h.send({ ack: DATA0, sackBlocks: blocks.slice(k, k + 4) as [number, number][] });
  }
  assert.equal(h.conn.counters.sackBlocksIgnored, 100 - MAX_SACK_RANGES);
  assert.ok(h.conn.info().inRecovery);
  // A cumulative ACK of everything ends it as usual.
  h.send({ ack: seqAdd(DATA0, 10_000) });
  assert.equal(h.conn.info().unackedBytes, 0);
  assert.ok(!h.conn.info().inRecovery);
});
