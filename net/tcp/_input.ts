/** Segment arrival (RFC 9293 section 3.10.7), for a connection that exists. */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";
import { DEFAULT_PEER_MSS, SMALL_RING, type Tcb, TIMESTAMPS_LEN } from "./_tcb.ts";
import { NewReno } from "./_congestion.ts";
import { TcpEvent } from "./options.ts";
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax } from "./seq.ts";

const { FIN, SYN, RST, ACK } = TcpFlags;
/** RFC 7323 section 2.3: a shift count above 14 is treated as 14. */
const MAX_SHIFT = 14;

/** Processes one segment that belongs to `t`. */
export function segmentArrives(t: Tcb, seg: TcpRepr, now: number): void {
  t.counters.segmentsIn++;
  switch (t.state) {
    case "CLOSED":
      return;
    case "SYN-HELD":
      return heldSegment(t, seg);
    case "SYN-SENT":
      return synSentSegment(t, seg, now);
    case "SYN-RECEIVED":
    case "ESTABLISHED":
    case "FIN-WAIT-1":
    case "FIN-WAIT-2":
    case "CLOSE-WAIT":
    case "CLOSING":
    case "LAST-ACK":
    case "TIME-WAIT":
      return synchronizedSegment(t, seg, now);
    default: {
      const never: never = t.state;
      throw new TypeError(`Unknown TCP state "${never}"`);
    }
  }
}

/** Records the peer's SYN: its sequence number and the options it offers (RFC 7323, RFC 2018). */
export function takePeerSyn(t: Tcb, seg: TcpRepr): void {
  t.irs = seg.seq;
  t.rcvNxt = seqAdd(seg.seq, 1);
  t.lastAckSent = t.rcvNxt;
  t.peerMss = seg.mss ?? DEFAULT_PEER_MSS;
  t.wsOk = t.cfg.windowScaling && seg.windowScale !== undefined;
  if (t.wsOk) {
    t.sndScale = Math.min(seg.windowScale ?? 0, MAX_SHIFT);
  } else {
    // RFC 7323 section 2.2: scaling is on only if both SYNs carry the option.
    t.sndScale = 0;
    t.rcvScale = 0;
  }
  t.sackOk = t.cfg.sack && seg.sackPermitted === true;
  t.tsOk = t.cfg.timestamps && seg.timestamps !== undefined;
  if (seg.timestamps !== undefined) t.tsRecent = seg.timestamps[0];
  t.sndMss = Math.max(64, Math.min(t.peerMss, t.cfg.mss) - (t.tsOk ? TIMESTAMPS_LEN : 0));
  t.rcvMss = Math.min(t.peerMss, t.cfg.mss);
  t.cc.mss = t.sndMss;
  t.cc.cwnd = NewReno.initialWindow(t.sndMss);
  // RFC 7323 section 2.2: the window in a SYN is never scaled.
  t.sndWnd = t.maxSndWnd = seg.window;
  t.sndWl1 = seg.seq;
  t.sndWl2 = seg.ack;
  // The window our own SYN advertised (unscaled), until the next segment we send says otherwise.
  t.rcvAdvEdge = t.rcvAdvMax = seqAdd(t.rcvNxt, Math.min(t.cfg.recvBufferLimit, 0xffff));
}

/** SYN-HELD: the owner has not decided yet. The peer may retransmit its SYN or give up with an RST. */
function heldSegment(t: Tcb, seg: TcpRepr): void {
  if (seg.flags & RST) {
    if (seg.seq === t.rcvNxt) {
      t.counters.resetsReceived++;
      t.fail("reset", "RST while held");
    }
    return;
  }
  if (seg.flags & SYN && seg.seq === t.irs) t.counters.duplicateSyns++;
}

/** RFC 9293 section 3.10.7.3, SYN-SENT. */
function synSentSegment(t: Tcb, seg: TcpRepr, now: number): void {
  const f = seg.flags;
  if (f & ACK && (seqLe(seg.ack, t.iss) || seqGt(seg.ack, t.sndMax))) {
    // First check: an unacceptable ACK draws <SEQ=SEG.ACK><CTL=RST> unless it is itself an RST.
    if (!(f & RST)) queueRst(t, seg.ack, -1);
    return;
  }
  if (f & RST) {
    // Second check: with an acceptable ACK the peer refused us; without one, drop.
    if (f & ACK) {
      t.counters.resetsReceived++;
      t.fail("refused", "RST in SYN-SENT");
    }
    return;
  }
  if (!(f & SYN)) return;
  takePeerSyn(t, seg);
  if (f & ACK) {
    t.sndWl2 = seg.ack;
    synAcked(t, seg, now);
    t.setState("ESTABLISHED", "SYN-ACK received");
    t.events |= TcpEvent.Established;
    t.ackNow = true;
    if (t.finQueued) t.setState("FIN-WAIT-1", "shutdown queued before establishment");
  } else {
    // Simultaneous open: answer with SYN-ACK (our SYN again, now carrying an ACK).
    t.setState("SYN-RECEIVED", "SYN received in SYN-SENT");
    t.sndNxt = t.iss;
    t.rtxAt = Number.POSITIVE_INFINITY;
  }
}

/** Our SYN was acknowledged: advance SND.UNA over it and take an RTT sample. */
function synAcked(t: Tcb, seg: TcpRepr, now: number): void {
  t.sndUna = seg.ack;
  if (seqLt(t.sndNxt, t.sndUna)) t.sndNxt = t.sndUna;
  if (t.rttTime >= 0) t.rtt.sample(now - t.rttTime);
  t.rttTime = -1;
  t.retries = 0;
  t.rtxAt = Number.POSITIVE_INFINITY;
}

/** The data the peer may send that we can hold: up to the edge we advertised, never past the buffer. */
function rcvWnd(t: Tcb): number {
  return Math.max(0, Math.min(seqDiff(t.rcvAdvEdge, t.rcvNxt), t.cfg.recvBufferLimit - t.rcvBuf.length));
}

/**
 * The window for segment acceptability (RFC 9293 section 3.10.7.4 first): up to the furthest edge we ever advertised.
 * A peer that sent up to an edge we later pulled in by rounding must still have its ACKs heard; otherwise, with our
 * window closed, every ACK it sends (seq = its SND.NXT, past our edge) would be dropped and both sides would wait.
 */
function acceptWnd(t: Tcb): number {
  return Math.max(0, seqDiff(seqMax(t.rcvAdvEdge, t.rcvAdvMax), t.rcvNxt));
}

/** RFC 9293 section 3.10.7.4, the synchronized states (and SYN-RECEIVED). */
function synchronizedSegment(t: Tcb, seg: TcpRepr, now: number): void {
  const f = seg.flags;
  const len = seg.payload.length;
  // A retransmitted SYN while our SYN-ACK is outstanding: our SYN-ACK was lost, send it again.
  if (t.state === "SYN-RECEIVED" && f & SYN && !(f & ACK) && seg.seq === t.irs) {
    t.counters.duplicateSyns++;
    t.sndNxt = t.iss;
    return;
  }

  // First: sequence number acceptability, trimming what lies outside the window.
  const wnd = acceptWnd(t);
  const segLen = len + (f & SYN ? 1 : 0) + (f & FIN ? 1 : 0);
  let acceptable: boolean;
  if (segLen === 0) {
    // Linux's tcp_sequence() also takes a bare ACK right at the window's edge, where a peer that filled our window
    // has its SND.NXT: its ACKs must be heard while our window is closed.
    acceptable = seqInWindow(seg.seq, t.rcvNxt, wnd + 1);
  } else if (wnd === 0) {
    // RFC 9293 allows the ACK and RST of such segments; like Linux we also take a bare FIN at RCV.NXT, which
    // costs no buffer space, so that a zero window never holds up a close.
    acceptable = seg.seq === t.rcvNxt;
  } else {
    acceptable = seqInWindow(seg.seq, t.rcvNxt, wnd) || seqInWindow(seqAdd(seg.seq, segLen - 1), t.rcvNxt, wnd);
  }
  if (!acceptable) {
    if (f & RST) return;
    t.counters.outOfWindow++;
    t.ackNow = true;
    if (t.state === "TIME-WAIT" && f & FIN) t.closeAt = now + t.cfg.timeWaitMs;
    return;
  }
  // RFC 7323 section 4.3: remember the peer's TSval for echoing.
  if (t.tsOk && seg.timestamps !== undefined && seqLe(seg.seq, t.lastAckSent)) {
    if (((seg.timestamps[0] - t.tsRecent) | 0) >= 0) t.tsRecent = seg.timestamps[0];
  }
  if (t.cfg.keepalive !== null) {
    t.keepAt = now + t.cfg.keepalive.idleMs;
    t.keepProbes = 0;
  }

  // Second: RST (RFC 5961 section 3.2: only an exact match resets; an in-window one draws a challenge ACK).
  if (f & RST) {
    if (seg.seq !== t.rcvNxt) {
      t.counters.challengeAcks++;
      t.ackNow = true;
      return;
    }
    t.counters.resetsReceived++;
    if (t.state === "TIME-WAIT") t.setState("CLOSED", "RST in TIME-WAIT");
    else t.fail(t.state === "SYN-RECEIVED" && !t.passive ? "refused" : "reset", `RST in ${t.state}`);
    return;
  }

  // Fourth: a SYN in a synchronized state draws a challenge ACK (RFC 5961 section 4.2, RFC 9293 3.10.7.4).
  if (f & SYN) {
    t.counters.challengeAcks++;
    t.ackNow = true;
    return;
  }

  // Fifth: the ACK field.
  if (!(f & ACK)) return;
  if (t.state === "SYN-RECEIVED") {
    if (!(seqLt(t.sndUna, seg.ack) && seqLe(seg.ack, t.sndMax))) {
      queueRst(t, seg.ack, -1);
      return;
    }
    synAcked(t, seg, now);
    t.sndWnd = seg.window << t.sndScale;
    t.maxSndWnd = Math.max(t.maxSndWnd, t.sndWnd);
    t.sndWl1 = seg.seq;
    t.sndWl2 = seg.ack;
    t.setState("ESTABLISHED", "ACK of SYN-ACK");
    t.events |= TcpEvent.Established;
    if (t.finQueued) t.setState("FIN-WAIT-1", "shutdown queued before establishment");
  }
  if (!ackArrives(t, seg, now)) return;
  if (t.state === "CLOSED") return;

  // Seventh: segment text, trimmed to [RCV.NXT, window edge).
  let seq = seg.seq;
  let off = 0;
  let dlen = len;
  let fin = (f & FIN) !== 0;
  if (seqLt(seq, t.rcvNxt)) {
    const old = seqDiff(t.rcvNxt, seq);
    if (old >= dlen) {
      // All data old; a FIN at rcvNxt-1 is a retransmission of one we already took.
      if (fin && old > dlen) fin = false;
      off = dlen;
      dlen = 0;
    } else {
      off = old;
      dlen -= old;
    }
    seq = t.rcvNxt;
    t.ackNow = true;
  }
  const edge = seqAdd(t.rcvNxt, rcvWnd(t));
  if (seqGt(seqAdd(seq, dlen), edge)) {
    dlen = Math.max(0, seqDiff(edge, seq));
    fin = false;
    t.ackNow = true;
  }
  if (dlen > 0) receiveText(t, seq, seg.payload.subarray(off, off + dlen), now);

  // Eighth: FIN.
  if (fin) {
    const finSeq = seqAdd(seq, dlen);
    if (finSeq === t.rcvNxt) finArrives(t, now);
    else if (seqGt(finSeq, t.rcvNxt)) {
      t.peerFinSeq = finSeq;
      t.ackNow = true;
    }
  }
  if (t.peerFinSeq !== -1 && t.peerFinSeq === t.rcvNxt && !t.finReceived) finArrives(t, now);
  if (t.state === "TIME-WAIT" && f & FIN) t.closeAt = now + t.cfg.timeWaitMs;
}

/**
 * RFC 9293 section 3.10.7.4 fifth, for ESTABLISHED and the states after it: SND.UNA, the send window, RTT,
 * congestion control, loss detection and the FIN being acknowledged. Returns false if the segment is dropped.
 */
function ackArrives(t: Tcb, seg: TcpRepr, now: number): boolean {
  const ack = seg.ack;
  if (seqGt(ack, t.sndMax)) {
    t.counters.ackOfUnsent++;
    t.ackNow = true;
    return false;
  }
  // RFC 5961 section 5.2: an ACK too far below SND.UNA is blind-injection material.
  if (seqLt(ack, seqAdd(t.sndUna, -Math.max(t.maxSndWnd, 0xffff)))) {
    t.counters.challengeAcks++;
    t.ackNow = true;
    return false;
  }
  const wnd = seg.window << t.sndScale;
  const windowChanged = wnd !== t.sndWnd;
  if (seqLt(t.sndWl1, seg.seq) || (t.sndWl1 === seg.seq && seqLe(t.sndWl2, ack))) {
    if (seqGe(ack, t.sndUna)) {
      t.sndWnd = wnd;
      t.sndWl1 = seg.seq;
      t.sndWl2 = ack;
      if (wnd > t.maxSndWnd) t.maxSndWnd = wnd;
      if (wnd > 0) {
        t.persistAt = Number.POSITIVE_INFINITY;
        t.persistBackoff = 0;
      }
    }
  }
  if (t.sackOk && seg.sackBlocks !== undefined) {
    for (const [l, r] of seg.sackBlocks) {
      if (seqLt(l, r) && seqGt(l, ack) && seqLe(r, t.sndMax) && !t.sacked.add(l, r)) t.counters.sackBlocksIgnored++;
    }
  }
  if (seqGt(ack, t.sndUna)) newAck(t, seg, now);
  else if (
    ack === t.sndUna && seg.payload.length === 0 && !(seg.flags & (SYN | FIN)) && !windowChanged &&
    t.sndMax !== t.sndUna
  ) {
    dupAck(t);
  }
  return true;
}

/** New data acknowledged: RFC 6298 section 5 timer rules, RFC 5681/6582 window updates. */
function newAck(t: Tcb, seg: TcpRepr, now: number): void {
  const ack = seg.ack;
  const acked = seqDiff(ack, t.sndUna);
  // RTT: RFC 7323 section 4 from the echoed timestamp, else Karn's timed segment. Karn's rule carries over to
  // timestamps: an echo of a segment sent before the last timeout measures the losses, not the path.
  if (t.tsOk && seg.timestamps !== undefined && seg.timestamps[1] !== 0) {
    const echoed = seg.timestamps[1];
    if (((echoed - (Math.ceil(t.lastRtoTime) >>> 0)) | 0) >= 0 || t.lastRtoTime === Number.NEGATIVE_INFINITY) {
      t.rtt.sample(Math.max(0, ((now >>> 0) - echoed) | 0));
    }
  } else if (t.rttTime >= 0 && seqGe(ack, t.rttSeq)) {
    t.rtt.sample(now - t.rttTime);
    t.rttTime = -1;
  }
  const dataEnd = t.dataEnd;
  const finAcked = t.finQueued && seqGt(ack, dataEnd);
  const dataAcked = seqDiff(finAcked ? dataEnd : ack, t.sndBufSeq);
  if (dataAcked > 0) {
    t.sendBuf.advance(dataAcked);
    t.sendBuf.releaseIfEmpty(SMALL_RING);
    t.sndBufSeq = seqAdd(t.sndBufSeq, dataAcked);
    if (t.writeBlocked) {
      t.writeBlocked = false;
      t.events |= TcpEvent.Writable;
    }
  }
  t.sndUna = ack;
  if (seqLt(t.sndNxt, ack)) t.sndNxt = ack;
  if (seqLt(t.highRxt, ack)) t.highRxt = ack;
  t.sacked.pruneBelow(ack);
  t.retries = 0;
  t.timeoutInRow = false;

  if (t.inRecovery) {
    if (seqGe(ack, t.recover)) {
      t.inRecovery = false;
      t.dupAcks = 0;
      t.rexmitQuota = 0;
      t.cc.onExitRecovery(seqDiff(t.sndMax, ack));
    } else {
      // RFC 6582 section 3.2 step 5: a partial ACK; the next hole is lost too unless already retransmitted.
      t.cc.onPartialAck(acked);
      if (seqGe(ack, t.highRxt)) t.forceRexmit = true;
    }
  } else {
    t.dupAcks = 0;
    t.cc.onAck(acked);
    // Keep `recover` trailing SND.UNA so that its comparison stays meaningful across 2^31 bytes.
    if (seqGt(ack, t.recover)) t.recover = seqAdd(ack, -1);
  }
  // RFC 6298 section 5.2 / 5.3.
  t.rtxAt = t.sndUna === t.sndMax ? Number.POSITIVE_INFINITY : now + t.rtt.rto;

  if (finAcked) {
    switch (t.state) {
      case "FIN-WAIT-1":
        t.setState("FIN-WAIT-2", "our FIN acknowledged");
        break;
      case "CLOSING":
        t.setState("TIME-WAIT", "our FIN acknowledged");
        t.closeAt = now + t.cfg.timeWaitMs;
        t.keepAt = Number.POSITIVE_INFINITY;
        break;
      case "LAST-ACK":
        t.setState("CLOSED", "our FIN acknowledged");
        break;
      default:
        break;
    }
  }
}

/** RFC 5681 section 3.2 and RFC 6582 section 3.2: duplicate ACKs and fast retransmit. */
function dupAck(t: Tcb): void {
  t.dupAcks++;
  if (t.inRecovery) {
    t.cc.onDupAckInRecovery();
    if (t.sackOk && t.rexmitQuota < 4) t.rexmitQuota++;
    return;
  }
  // Step 1: only when the cumulative ACK covers more than `recover` (no second recovery for one window).
  if (t.dupAcks === 3 && seqGt(t.sndUna, t.recover)) {
    t.counters.fastRetransmits++;
    t.inRecovery = true;
    t.recover = t.sndMax;
    t.highRxt = t.sndUna;
    t.forceRexmit = true;
    t.rttTime = -1;
    t.cc.onEnterRecovery(seqDiff(t.sndMax, t.sndUna));
  }
}

/** In-window data at `seq` (trimmed): in order, or parked for reassembly. */
function receiveText(t: Tcb, seq: number, data: Uint8Array, now: number): void {
  if (t.state !== "ESTABLISHED" && t.state !== "FIN-WAIT-1" && t.state !== "FIN-WAIT-2") {
    t.counters.dataAfterFinDrops++;
    return;
  }
  const n = data.length;
  if (n > t.rcvMss && n <= t.cfg.mss) t.rcvMss = n;
  if (seq === t.rcvNxt) {
    t.rcvBuf.writeAt(t.rcvBuf.length, data);
    let next = seqAdd(t.rcvNxt, n);
    if (t.ooo.size > 0) {
      const merged = t.ooo.popContiguous(next);
      if (merged !== next) {
        next = merged;
        while (true) {
          const m = t.ooo.popContiguous(next);
          if (m === next) break;
          next = m;
        }
      }
      // RFC 5681 section 4.2: ACK at once when a segment fills (part of) a hole.
      t.ackNow = true;
    }
    const advanced = seqDiff(next, t.rcvNxt);
    t.rcvBuf.extend(advanced);
    t.rcvNxt = next;
    t.events |= TcpEvent.Readable;
    // RFC 5681 section 4.2 / RFC 9293 3.8.6.3: ACK at least every second full-sized segment, else delay.
    t.unackedBytes += advanced;
    if (t.unackedBytes >= 2 * t.rcvMss) t.ackNow = true;
    else if (t.ackAt === Number.POSITIVE_INFINITY) t.ackAt = now + t.cfg.delayedAckMs;
    return;
  }
  // Out of order: park it at its offset and send a duplicate ACK with SACK blocks at once (RFC 5681 4.2).
  t.ackNow = true;
  const end = seqAdd(seq, n);
  if (t.ooo.covers(seq, end)) return;
  if (t.ooo.wouldOverflow(seq, end)) {
    t.counters.outOfOrderOverflowDrops++;
    return;
  }
  t.counters.outOfOrderSegments++;
  t.rcvBuf.writeAt(t.rcvBuf.length + seqDiff(seq, t.rcvNxt), data);
  t.ooo.add(seq, end);
}

/** RFC 9293 section 3.10.7.4 eighth: the peer's FIN, in sequence. */
function finArrives(t: Tcb, now: number): void {
  t.rcvNxt = seqAdd(t.rcvNxt, 1);
  t.finReceived = true;
  t.peerFinSeq = -1;
  t.ackNow = true;
  t.events |= TcpEvent.PeerFin;
  switch (t.state) {
    case "SYN-RECEIVED":
    case "ESTABLISHED":
      t.setState("CLOSE-WAIT", "FIN received");
      break;
    case "FIN-WAIT-1":
      t.setState("CLOSING", "FIN received before our FIN was acknowledged");
      break;
    case "FIN-WAIT-2":
      t.setState("TIME-WAIT", "FIN received");
      t.closeAt = now + t.cfg.timeWaitMs;
      t.keepAt = Number.POSITIVE_INFINITY;
      break;
    default:
      break;
  }
}

/** Queues an RST: with `ack` >= 0 it carries ACK. */
export function queueRst(t: Tcb, seq: number, ack: number): void {
  t.rstSeq = seq >>> 0;
  t.rstAck = ack;
}
