import assert from "node:assert/strict";
import {
  ACK,
  bytes,
  closeWait,
  closing,
  established,
  FIN,
  finWait1,
  finWait2,
  lastAck,
  OUR_ISN,
  PEER_ISN,
  peerSyn,
  SYN,
  synHeld,
  synReceived,
  timeWait,
} from "./_fixtures.ts";
import { TcpEvent } from "./options.ts";
import { seqAdd } from "./seq.ts";

const DATA0 = seqAdd(OUR_ISN, 1);
const PEER0 = seqAdd(PEER_ISN, 1);

Deno.test("RFC 9293 3.10.4: shutdownWrite() in ESTABLISHED sends FIN and enters FIN-WAIT-1", () => {
  const h = established();
  h.conn.shutdownWrite();
  h.poll();
  const f = h.one();
  assert.equal(f.flags, FIN | ACK);
  assert.equal(f.seq, DATA0);
  assert.equal(h.conn.state, "FIN-WAIT-1");
  assert.throws(() => h.conn.write(bytes(1)), TypeError);
});

Deno.test("RFC 9293 3.10.4: the FIN follows the queued data in the last data segment", () => {
  const h = established();
  h.conn.write(bytes(1500));
  h.conn.shutdownWrite();
  h.poll();
  const segs = h.take();
  assert.deepEqual(segs.map((s) => [s.payload.length, s.flags]), [[1000, ACK], [500, FIN | ACK]]);
});

Deno.test("RFC 9293 3.10.7.4 fifth: the ACK of our FIN moves FIN-WAIT-1 to FIN-WAIT-2", () => {
  const h = finWait1();
  h.send({ ack: seqAdd(DATA0, 1) });
  assert.equal(h.conn.state, "FIN-WAIT-2");
  assert.deepEqual(h.take(), []);
});

Deno.test("RFC 9293 3.8.1: our FIN is retransmitted on timeout in FIN-WAIT-1", () => {
  const h = finWait1();
  h.fire();
  const f = h.one();
  assert.equal(f.flags, FIN | ACK);
  assert.equal(f.seq, DATA0);
});

Deno.test("half-close: in FIN-WAIT-2 the peer's data still arrives and is acknowledged", () => {
  const h = finWait2();
  const d = h.data(700);
  assert.deepEqual(h.conn.peek(), d);
  h.advance(40);
  assert.equal(h.one().ack, seqAdd(PEER0, 700));
  assert.equal(h.conn.state, "FIN-WAIT-2");
});

Deno.test("RFC 9293 3.10.7.4 eighth: a FIN in FIN-WAIT-2 is acknowledged and starts TIME-WAIT", () => {
  const h = finWait2();
  h.data(0, FIN);
  const a = h.one();
  assert.equal(a.ack, seqAdd(PEER0, 1));
  assert.equal(h.conn.state, "TIME-WAIT");
  assert.ok(h.takeEvents() & TcpEvent.PeerFin);
});

Deno.test("TIME-WAIT (kept short for a proxy) ends in CLOSED after timeWaitMs", () => {
  const h = timeWait({ timeWaitMs: 2000 });
  const start = h.now;
  h.takeEvents();
  h.fire();
  assert.equal(h.now - start, 2000);
  assert.equal(h.conn.state, "CLOSED");
  assert.ok(h.takeEvents() & TcpEvent.Closed);
  assert.equal(h.conn.error, null);
});

Deno.test("RFC 9293 3.10.7.4 eighth: a retransmitted FIN in TIME-WAIT is acknowledged again and restarts the timer", () => {
  const h = timeWait();
  h.advance(1500);
  h.send({ seq: PEER0, flags: FIN | ACK });
  assert.equal(h.one().ack, seqAdd(PEER0, 1));
  assert.equal(h.conn.nextDeadline(), 1500 + 2000);
});

Deno.test("RFC 9293 3.10.7.4 eighth: a FIN in FIN-WAIT-1 (simultaneous close) enters CLOSING", () => {
  const h = closing();
  assert.equal(h.conn.state, "CLOSING");
});

Deno.test("RFC 9293 3.10.7.4 fifth: the ACK of our FIN moves CLOSING to TIME-WAIT", () => {
  const h = closing();
  h.send({ ack: seqAdd(DATA0, 1) });
  assert.equal(h.conn.state, "TIME-WAIT");
});

Deno.test("RFC 9293 3.10.7.4: a FIN that also acknowledges our FIN takes FIN-WAIT-1 to TIME-WAIT", () => {
  const h = finWait1();
  h.send({ flags: FIN | ACK, ack: seqAdd(DATA0, 1) });
  assert.equal(h.conn.state, "TIME-WAIT");
  assert.equal(h.one().ack, seqAdd(PEER0, 1));
});

Deno.test("RFC 9293 3.10.7.4 eighth: a FIN in ESTABLISHED is acknowledged at once and enters CLOSE-WAIT", () => {
  const h = established();
  const d = h.data(300, FIN);
  assert.equal(h.conn.state, "CLOSE-WAIT");
  assert.equal(h.one().ack, seqAdd(PEER0, 301));
  assert.ok(h.takeEvents() & TcpEvent.PeerFin);
  assert.deepEqual(h.conn.peek(), d);
  assert.equal(h.conn.eof, false);
  h.conn.consume(300);
  assert.equal(h.conn.eof, true);
});

Deno.test("half-close: in CLOSE-WAIT we keep sending until the owner shuts down writing", () => {
  const h = closeWait();
  assert.equal(h.conn.write(bytes(1200)), 1200);
  h.poll();
  assert.deepEqual(h.take().map((s) => s.payload.length), [1000, 200]);
  assert.equal(h.conn.state, "CLOSE-WAIT");
});

Deno.test("RFC 9293 3.10.4: shutdownWrite() in CLOSE-WAIT sends FIN and enters LAST-ACK", () => {
  const h = closeWait();
  h.conn.shutdownWrite();
  h.poll();
  assert.equal(h.one().flags, FIN | ACK);
  assert.equal(h.conn.state, "LAST-ACK");
});

Deno.test("RFC 9293 3.10.7.4 fifth: the ACK of our FIN moves LAST-ACK to CLOSED", () => {
  const h = lastAck();
  h.takeEvents();
  h.send({ ack: seqAdd(DATA0, 1) });
  assert.equal(h.conn.state, "CLOSED");
  assert.ok(h.takeEvents() & TcpEvent.Closed);
  assert.equal(h.conn.error, null);
});

Deno.test("RFC 9293 3.10.7.4 eighth: a FIN received out of order is taken once the gap fills", () => {
  const h = established();
  h.send({ seq: seqAdd(PEER0, 500), payload: bytes(500), flags: FIN | ACK });
  assert.equal(h.conn.state, "ESTABLISHED");
  h.take();
  h.send({ seq: PEER0, payload: bytes(500) });
  assert.equal(h.conn.state, "CLOSE-WAIT");
  assert.equal(h.one().ack, seqAdd(PEER0, 1001));
  assert.equal(h.conn.readable, 1000);
});

Deno.test("RFC 9293 3.10.7.4: ACK and FIN together in SYN-RECEIVED lead through ESTABLISHED to CLOSE-WAIT", () => {
  const h = synReceived();
  h.take();
  h.send({ flags: FIN | ACK });
  assert.equal(h.conn.state, "CLOSE-WAIT");
});

Deno.test("shutdownWrite() before accept(): the FIN follows the handshake", () => {
  const h = synHeld();
  h.conn.write(bytes(10));
  h.conn.shutdownWrite();
  h.conn.accept();
  h.poll();
  h.take();
  h.send();
  assert.equal(h.conn.state, "FIN-WAIT-1");
  const s = h.one();
  assert.equal(s.payload.length, 10);
  assert.equal(s.flags, FIN | ACK);
});

Deno.test("RFC 6191: only a bare SYN above the old sequence space reopens a pair in TIME-WAIT", () => {
  const h = timeWait();
  assert.equal(h.conn.state, "TIME-WAIT");
  assert.ok(h.conn.reopenedBy(peerSyn({ seq: seqAdd(h.peerNxt, 1000) })));
  assert.ok(!h.conn.reopenedBy(peerSyn({ seq: seqAdd(h.peerNxt, -1) })), "a SYN below rcvNxt is an old duplicate");
  assert.ok(!h.conn.reopenedBy(peerSyn({ seq: seqAdd(h.peerNxt, 1000), flags: SYN | ACK })));
  assert.ok(!established().conn.reopenedBy(peerSyn({ seq: seqAdd(PEER0, 1000) })), "only in TIME-WAIT");
});
