import assert from "node:assert/strict";
import {
  ACK,
  closeWait,
  closing,
  established,
  finWait1,
  finWait2,
  Harness,
  lastAck,
  OUR_ISN,
  PEER_ISN,
  peerSyn,
  RST,
  SYN,
  synHeld,
  timeWait,
} from "./_fixtures.ts";
import { TcpEvent } from "./options.ts";
import { rstForUnmatched } from "./reset.ts";
import { seqAdd } from "./seq.ts";

const DATA0 = seqAdd(OUR_ISN, 1);

const resettable: [string, () => Harness][] = [
  ["ESTABLISHED", () => established()],
  ["FIN-WAIT-1", () => finWait1()],
  ["FIN-WAIT-2", () => finWait2()],
  ["CLOSE-WAIT", () => closeWait()],
];

for (const [state, make] of resettable) {
  Deno.test(`RFC 9293 3.10.7.4 second: an RST at exactly RCV.NXT in ${state} resets the connection`, () => {
    const h = make();
    assert.equal(h.conn.state, state);
    h.takeEvents();
    h.send({ flags: RST });
    assert.equal(h.conn.state, "CLOSED");
    assert.equal(h.conn.error, "reset");
    const ev = h.takeEvents();
    assert.ok(ev & TcpEvent.Reset && ev & TcpEvent.Closed);
    assert.deepEqual(h.take(), []);
  });
}

for (const [state, make] of [["CLOSING", closing], ["LAST-ACK", lastAck], ["TIME-WAIT", timeWait]] as const) {
  Deno.test(`RFC 9293 3.10.7.4 second: an RST in ${state} enters CLOSED`, () => {
    const h = make();
    assert.equal(h.conn.state, state);
    h.send({ flags: RST });
    assert.equal(h.conn.state, "CLOSED");
  });
}

Deno.test("RFC 5961 3.2: an in-window RST that is not at RCV.NXT draws a challenge ACK", () => {
  const h = established();
  h.send({ flags: RST, seq: seqAdd(PEER_ISN, 100) });
  assert.equal(h.conn.state, "ESTABLISHED");
  const a = h.one();
  assert.equal(a.flags, ACK);
  assert.equal(h.conn.counters.challengeAcks, 1);
});

Deno.test("RFC 9293 3.10.7.4 first: an RST outside the window is dropped silently", () => {
  const h = established();
  h.send({ flags: RST, seq: seqAdd(PEER_ISN, 1_000_000) });
  assert.equal(h.conn.state, "ESTABLISHED");
  assert.deepEqual(h.take(), []);
});

Deno.test("RFC 5961 4.2 / RFC 9293 3.10.7.4 fourth: a SYN in ESTABLISHED draws a challenge ACK", () => {
  const h = established();
  h.send({ ...peerSyn({ seq: seqAdd(PEER_ISN, 10) }) });
  assert.equal(h.conn.state, "ESTABLISHED");
  assert.equal(h.one().flags, ACK);
});

Deno.test("RFC 9293 3.10.7.4 fifth: an ACK of data never sent is answered with an ACK and dropped", () => {
  const h = established();
  h.send({ ack: seqAdd(DATA0, 5000), payload: new Uint8Array(10) });
  assert.equal(h.one().ack, seqAdd(PEER_ISN, 1));
  assert.equal(h.conn.readable, 0);
  assert.equal(h.conn.counters.ackOfUnsent, 1);
});

Deno.test("RFC 9293 3.10.5: abort() in ESTABLISHED sends <SEQ=SND.NXT><CTL=RST> and closes", () => {
  const h = established();
  h.conn.abort();
  h.poll();
  const r = h.one();
  assert.equal(r.flags & RST, RST);
  assert.equal(r.seq, DATA0);
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "aborted");
  assert.equal(h.conn.write(new Uint8Array(1)), 0);
});

Deno.test("RFC 9293 3.10.5: abort() of a held SYN answers it with RST,ACK", () => {
  const h = synHeld();
  h.conn.abort();
  h.poll();
  const r = h.one();
  assert.equal(r.flags, RST | ACK);
  assert.equal(r.ack, seqAdd(PEER_ISN, 1));
});

Deno.test("RFC 9293 3.10.7.1: rstForUnmatched() answers an ACK with <SEQ=SEG.ACK><CTL=RST>", () => {
  const r = rstForUnmatched({ ...peerSyn(), flags: ACK, ack: 4242, seq: 99, payload: new Uint8Array(5) })!;
  assert.equal(r.flags, RST);
  assert.equal(r.seq, 4242);
  assert.equal(r.srcPort, 80);
  assert.equal(r.dstPort, 40000);
});

Deno.test("RFC 9293 3.10.7.1: rstForUnmatched() answers a SYN with <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>", () => {
  const r = rstForUnmatched(peerSyn({ seq: 0xffff_ffff }))!;
  assert.equal(r.flags, RST | ACK);
  assert.equal(r.seq, 0);
  assert.equal(r.ack, 0);
  assert.equal(rstForUnmatched({ ...peerSyn(), flags: RST }), null);
  assert.equal(rstForUnmatched({ ...peerSyn(), flags: SYN, payload: new Uint8Array(3) })!.ack, PEER_ISN + 4);
});
