import assert from "node:assert/strict";
import {
  ACK,
  brief,
  established,
  Harness,
  OUR_ISN,
  OUR_PORT,
  PEER_ISN,
  PEER_PORT,
  peerSyn,
  RST,
  SYN,
  synHeld,
  synReceived,
  synSent,
  testOptions,
} from "./_fixtures.ts";
import { TcpConnection } from "./connection.ts";
import { TcpEvent } from "./options.ts";
import { seqAdd } from "./seq.ts";

Deno.test("deferred accept: a SYN creates a SYN-HELD connection that sends nothing until the owner decides", () => {
  const h = synHeld();
  assert.equal(h.conn.state, "SYN-HELD");
  assert.ok(h.takeEvents() & TcpEvent.Incoming);
  h.advance(1000);
  assert.deepEqual(h.take(), []);
  // A retransmitted SYN is counted, still unanswered.
  h.send(peerSyn());
  assert.deepEqual(h.take(), []);
  assert.equal(h.conn.counters.duplicateSyns, 1);
});

Deno.test("RFC 9293 3.10.7.2: accept() sends a SYN-ACK with MSS, window scale and SACK-permitted", () => {
  const h = synHeld({ recvBufferLimit: 1 << 20 }, { windowScale: 7 });
  h.conn.accept();
  h.poll();
  const s = h.one();
  assert.equal(h.conn.state, "SYN-RECEIVED");
  assert.equal(s.flags, SYN | ACK);
  assert.equal(s.seq, OUR_ISN);
  assert.equal(s.ack, seqAdd(PEER_ISN, 1));
  assert.equal(s.srcPort, OUR_PORT);
  assert.equal(s.dstPort, PEER_PORT);
  assert.equal(s.mss, 1000);
  assert.equal(s.windowScale, 5); // 2^20 >> 5 fits in 16 bits
  assert.equal(s.sackPermitted, true);
  assert.equal(s.window, 0xffff); // RFC 7323 2.2: never scaled on a SYN
  assert.equal(s.timestamps, undefined);
});

Deno.test("RFC 9293 3.10.7.2: refuse() answers <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK> and closes", () => {
  const h = synHeld();
  h.conn.refuse();
  h.poll();
  const s = h.one();
  assert.equal(s.flags, RST | ACK);
  assert.equal(s.seq, 0);
  assert.equal(s.ack, seqAdd(PEER_ISN, 1));
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "refused");
  assert.ok(h.takeEvents() & TcpEvent.Closed);
});

Deno.test("refuse({ reply: 'none' }) sends nothing, leaving the ICMP answer to the router", () => {
  const h = synHeld();
  h.conn.refuse({ reply: "none" });
  h.poll();
  assert.deepEqual(h.take(), []);
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.peerIsn, PEER_ISN);
  assert.throws(() => h.conn.accept(), TypeError);
});

Deno.test("a held SYN neither accepted nor refused is refused with an RST after heldSynTimeoutMs", () => {
  const h = synHeld({ heldSynTimeoutMs: 5000 });
  h.fire();
  assert.equal(h.now, 5000);
  assert.equal(h.one().flags, RST | ACK);
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.counters.heldSynTimeouts, 1);
});

Deno.test("RFC 9293 3.10.7.4 second: an RST while the SYN is held closes the connection", () => {
  const h = synHeld();
  h.send({ flags: RST, ack: 0 });
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "reset");
});

Deno.test("RFC 9293 3.10.7.4: a retransmitted SYN in SYN-RECEIVED repeats the lost SYN-ACK", () => {
  const h = synReceived();
  h.take();
  h.send(peerSyn());
  const s = h.one();
  assert.equal(s.flags, SYN | ACK);
  assert.equal(s.seq, OUR_ISN);
});

Deno.test("RFC 9293 3.10.7.4 fifth: the ACK of our SYN moves SYN-RECEIVED to ESTABLISHED", () => {
  const h = synReceived();
  h.take();
  h.takeEvents();
  h.send();
  assert.equal(h.conn.state, "ESTABLISHED");
  assert.ok(h.takeEvents() & TcpEvent.Established);
  assert.deepEqual(h.take(), []);
});

Deno.test("RFC 9293 3.10.7.4 fifth: an unacceptable ACK in SYN-RECEIVED draws <SEQ=SEG.ACK><CTL=RST>", () => {
  const h = synReceived();
  h.take();
  h.send({ ack: 12345 });
  const s = h.one();
  assert.equal(s.flags, RST);
  assert.equal(s.seq, 12345);
  assert.equal(h.conn.state, "SYN-RECEIVED");
});

Deno.test("RFC 9293 3.10.7.4 second: an RST in SYN-RECEIVED (passive open) drops the connection", () => {
  const h = synReceived();
  h.take();
  h.send({ flags: RST });
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "reset");
  assert.deepEqual(h.take(), []);
});

Deno.test("RFC 6298 5.4-5.6: the SYN-ACK is retransmitted with a doubling RTO, then the connection times out", () => {
  const h = synReceived({ synRetries: 3 });
  h.take();
  const times: number[] = [];
  while (h.conn.state !== "CLOSED") {
    h.fire();
    for (const s of h.take()) if (s.flags === (SYN | ACK)) times.push(h.now);
  }
  assert.deepEqual(times, [1000, 3000, 7000]);
  assert.equal(h.conn.error, "timeout");
});

Deno.test("RFC 9293 3.10.7.3: a SYN-ACK moves SYN-SENT to ESTABLISHED and is acknowledged at once", () => {
  const h = synSent();
  const syn = h.one();
  assert.equal(syn.flags, SYN);
  assert.equal(syn.seq, OUR_ISN);
  assert.equal(syn.sackPermitted, true);
  h.now = 30;
  h.send({ flags: SYN | ACK, seq: PEER_ISN, mss: 1200, windowScale: 2, sackPermitted: true });
  assert.equal(h.conn.state, "ESTABLISHED");
  assert.ok(h.takeEvents() & TcpEvent.Established);
  const ack = h.one();
  assert.equal(ack.flags, ACK);
  assert.equal(ack.ack, seqAdd(PEER_ISN, 1));
  const info = h.conn.info();
  assert.equal(info.sndMss, 1000);
  assert.equal(info.sndScale, 2);
  assert.equal(info.srttMs, 30);
});

Deno.test("RFC 9293 3.10.7.3: an RST with an acceptable ACK in SYN-SENT means the connection was refused", () => {
  const h = synSent();
  h.take();
  h.send({ flags: RST | ACK, seq: 0 });
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "refused");
});

Deno.test("RFC 9293 3.10.7.3: an RST without ACK in SYN-SENT is dropped", () => {
  const h = synSent();
  h.take();
  h.send({ flags: RST, seq: 0 });
  assert.equal(h.conn.state, "SYN-SENT");
});

Deno.test("RFC 9293 3.10.7.3: an unacceptable ACK in SYN-SENT draws an RST", () => {
  const h = synSent();
  h.take();
  h.send({ flags: SYN | ACK, seq: PEER_ISN, ack: 77 });
  const s = h.one();
  assert.equal(s.flags, RST);
  assert.equal(s.seq, 77);
  assert.equal(h.conn.state, "SYN-SENT");
});

Deno.test("RFC 9293 3.10.7.3: a bare SYN in SYN-SENT (simultaneous open) leads to SYN-RECEIVED and a SYN-ACK", () => {
  const h = synSent();
  h.take();
  h.send({ ...peerSyn(), ack: 0 });
  assert.equal(h.conn.state, "SYN-RECEIVED");
  const s = h.one();
  assert.equal(s.flags, SYN | ACK);
  assert.equal(s.ack, seqAdd(PEER_ISN, 1));
  h.send({ flags: ACK });
  assert.equal(h.conn.state, "ESTABLISHED");
});

Deno.test("RFC 9293 3.10.7.3: the SYN is retransmitted on timeout and the connection gives up after synRetries", () => {
  const h = synSent({ synRetries: 2 });
  h.take();
  h.fire();
  assert.equal(h.one().flags, SYN);
  h.fire();
  assert.equal(h.one().flags, SYN);
  h.fire();
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "timeout");
  assert.deepEqual(h.take(), []); // no RST for a connection that never existed
});

Deno.test("RFC 7323 2.2: without the peer's window scale option neither side scales", () => {
  const h = synHeld({ recvBufferLimit: 1 << 20 }, { windowScale: undefined });
  h.conn.accept();
  h.poll();
  const s = h.one();
  assert.equal(s.windowScale, undefined);
  h.send({ window: 1000 });
  assert.equal(h.conn.info().sndWnd, 1000);
  assert.equal(h.conn.info().rcvScale, 0);
  h.data(10);
  h.advance(100);
  assert.equal(h.one().window, 0xffff);
});

Deno.test("RFC 9293 3.7.1: a peer that sends no MSS option is assumed to take 536 bytes", () => {
  const h = established({}, { mss: undefined });
  assert.equal(h.conn.info().sndMss, 536);
});

Deno.test("RFC 7323 3/4: timestamps are echoed when both SYNs carry them and give RTT samples", () => {
  const h = synHeld({ timestamps: true }, { timestamps: [500, 0] });
  h.conn.accept();
  h.poll();
  const synAck = h.one();
  assert.deepEqual(synAck.timestamps, [0, 500]);
  h.now = 20;
  h.send({ timestamps: [520, 0] });
  assert.equal(h.conn.info().sndMss, 1000 - 12);
  h.conn.write(new Uint8Array(100));
  h.poll();
  const d = h.one();
  assert.deepEqual(d.timestamps, [20, 520]);
  h.now = 50;
  h.send({ ack: seqAdd(d.seq, 100), timestamps: [550, 20] });
  assert.equal(h.conn.info().srttMs, 0.875 * 20 + 0.125 * 30); // RFC 6298 2.3: SYN-ACK sample 20, then 30
});

Deno.test("options are not offered when disabled: no SACK-permitted, no timestamps", () => {
  const conn = TcpConnection.connect({ localPort: 1, remotePort: 2 }, {
    config: testOptions({ sack: false, windowScaling: false }),
  });
  const h = new Harness(conn);
  h.poll();
  const s = h.one();
  assert.equal(s.sackPermitted, undefined);
  assert.equal(s.windowScale, undefined);
  assert.equal(s.timestamps, undefined);
  assert.ok(brief(s).startsWith("SYN"));
});
