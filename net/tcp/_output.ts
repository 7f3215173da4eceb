/** Segment generation: SYNs, data and FIN (with retransmission), probes, ACKs and RSTs. */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";
import type { Tcb } from "./_tcb.ts";
import { seqAdd, seqDiff, seqGt, seqLt, seqMax, seqMin } from "./seq.ts";

const { FIN, SYN, RST, ACK } = TcpFlags;
const NEVER = Number.POSITIVE_INFINITY;
const EMPTY = new Uint8Array(0);

/** Receives each outgoing segment; the object and its payload are only valid during the call. */
export type Emit = (seg: TcpRepr) => void;

/** Emits every segment `t` wants to send now and arms the timers that sending requires. */
export function flush(t: Tcb, now: number, emit: Emit): void {
  if (t.rstSeq !== -1) emitRst(t, emit);
  switch (t.state) {
    case "CLOSED":
    case "SYN-HELD":
      return;
    case "SYN-SENT":
      if (t.sndNxt === t.iss) sendSyn(t, now, emit);
      return;
    case "SYN-RECEIVED":
      if (t.sndNxt === t.iss) sendSyn(t, now, emit);
      break;
    case "ESTABLISHED":
    case "CLOSE-WAIT":
    case "FIN-WAIT-1":
    case "CLOSING":
    case "LAST-ACK":
      sendData(t, now, emit);
      break;
    case "FIN-WAIT-2":
    case "TIME-WAIT":
      break;
    default: {
      const never: never = t.state;
      throw new TypeError(`Unknown TCP state "${never}"`);
    }
  }
  if (t.keepProbePending) {
    // RFC 9293 section 3.8.4: a keepalive is a segment with SEG.SEQ = SND.NXT-1, which the peer must ACK.
    t.keepProbePending = false;
    t.counters.keepaliveProbes++;
    emitSeg(t, emit, seqAdd(t.sndUna, -1), 0, EMPTY, now);
  }
  // SEG.SEQ is the highest sequence sent: after a timeout SND.NXT has gone back (go-back-N), and a pure ACK
  // below the peer's RCV.NXT would be unacceptable to it and start an ACK war.
  if (t.ackNow) emitSeg(t, emit, t.sndMax, 0, EMPTY, now);
}

/** RFC 9293 section 3.8.6.2.2 receiver-side SWS avoidance: is a window update worth a segment now? */
export function windowUpdateDue(t: Tcb): boolean {
  const limit = t.cfg.recvBufferLimit;
  const cur = Math.max(0, seqDiff(t.rcvAdvEdge, t.rcvNxt));
  const space = limit - t.rcvBuf.length;
  return space - cur >= Math.min(limit >> 1, t.rcvMss) && space >= 2 * cur;
}

/** The 16-bit window field for a non-SYN segment; records the right edge it advertises. */
function windowField(t: Tcb): number {
  const limit = t.cfg.recvBufferLimit;
  const s = t.rcvScale;
  const space = Math.max(0, limit - t.rcvBuf.length);
  let edge = seqAdd(t.rcvNxt, (space >>> s) << s);
  // Never move the right edge left (RFC 9293 section 3.8.6); move it right only by a useful amount.
  if (seqLt(edge, t.rcvAdvEdge) || seqDiff(edge, t.rcvAdvEdge) < Math.min(limit >> 1, t.rcvMss)) {
    edge = seqMax(t.rcvAdvEdge, t.rcvNxt);
  }
  const win = seqDiff(edge, t.rcvNxt);
  // Round down, as Linux's tcp_select_window() does: rounding up would promise bytes the buffer cannot hold.
  const field = Math.min(0xffff, win >>> s);
  t.rcvAdvEdge = seqAdd(t.rcvNxt, field << s);
  t.rcvAdvMax = seqMax(t.rcvAdvMax, t.rcvAdvEdge);
  return field;
}

/** Bytes of payload one segment may carry now (SACK blocks take option space). */
function segRoom(t: Tcb): number {
  if (!t.sackOk || t.ooo.size === 0) return t.sndMss;
  const blocks = Math.min(t.ooo.size, t.tsOk ? 3 : 4);
  return t.sndMss - (4 + 8 * blocks);
}

/** Emits one segment with ACK, our window, timestamps and SACK blocks; it acknowledges everything received. */
function emitSeg(t: Tcb, emit: Emit, seq: number, flags: number, payload: Uint8Array, now: number): void {
  const o = t.out;
  o.seq = seq;
  o.ack = t.rcvNxt;
  o.flags = flags | ACK;
  o.window = windowField(t);
  o.payload = payload;
  if (t.tsOk) {
    t.tsPair[0] = now >>> 0;
    t.tsPair[1] = t.tsRecent;
    o.timestamps = t.tsPair;
  }
  if (t.sackOk && t.ooo.size > 0) o.sackBlocks = t.ooo.sackBlocks(t.tsOk ? 3 : 4);
  // Cleared by assignment, not `delete`: deleting a property of this reused object would turn it into a slow
  // dictionary-mode object for the rest of the connection.
  else if (o.sackBlocks !== undefined) (o as { sackBlocks: unknown }).sackBlocks = undefined;
  t.ackNow = false;
  t.ackAt = NEVER;
  t.unackedBytes = 0;
  t.lastAckSent = t.rcvNxt;
  t.counters.segmentsOut++;
  emit(o);
}

function emitRst(t: Tcb, emit: Emit): void {
  const withAck = t.rstAck >= 0;
  t.counters.resetsSent++;
  t.counters.segmentsOut++;
  emit({
    srcPort: t.localPort,
    dstPort: t.remotePort,
    seq: t.rstSeq,
    ack: withAck ? t.rstAck : 0,
    flags: RST | (withAck ? ACK : 0),
    window: 0,
    urgent: 0,
    payload: EMPTY,
  });
  t.rstSeq = -1;
  t.rstAck = -1;
}

/** Our SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), with the options RFC 7323 / RFC 2018 negotiate. */
function sendSyn(t: Tcb, now: number, emit: Emit): void {
  const active = t.state === "SYN-SENT";
  const window = Math.min(t.cfg.recvBufferLimit, 0xffff);
  const seg: TcpRepr = {
    srcPort: t.localPort,
    dstPort: t.remotePort,
    seq: t.iss,
    ack: active ? 0 : t.rcvNxt,
    flags: active ? SYN : SYN | ACK,
    window,
    urgent: 0,
    mss: t.cfg.mss,
    payload: EMPTY,
  };
  if (active ? t.cfg.windowScaling : t.wsOk) seg.windowScale = t.rcvScale;
  if (active ? t.cfg.sack : t.sackOk) seg.sackPermitted = true;
  if (active ? t.cfg.timestamps : t.tsOk) seg.timestamps = [now >>> 0, active ? 0 : t.tsRecent];
  if (!active) {
    t.rcvAdvEdge = t.rcvAdvMax = seqAdd(t.rcvNxt, window);
    t.ackNow = false;
    t.ackAt = NEVER;
    t.lastAckSent = t.rcvNxt;
  }
  t.sndNxt = seqAdd(t.iss, 1);
  t.sndMax = seqMax(t.sndMax, t.sndNxt);
  if (t.rtxAt === NEVER) t.rtxAt = now + t.rtt.rto;
  t.rttTime = t.retries === 0 ? now : -1;
  if (t.retries > 0) t.counters.retransmittedSegments++;
  t.counters.segmentsOut++;
  emit(seg);
}

/** Sends [s, end) of our sequence space (data, and the FIN if `end` passes the last data byte). */
function sendRange(t: Tcb, s: number, end: number, now: number, emit: Emit): void {
  const dataEnd = t.dataEnd;
  const n = Math.max(0, seqDiff(seqMin(end, dataEnd), s));
  const fin = t.finQueued && seqGt(end, dataEnd);
  const payload = n === 0 ? EMPTY : t.sendBuf.slice(seqDiff(s, t.sndBufSeq), n, t.scratch);
  if (seqLt(s, t.sndMax)) {
    t.counters.retransmittedSegments++;
    t.rttTime = -1; // Karn's algorithm: no RTT sample across a retransmission
  } else if (!t.tsOk && t.rttTime < 0) {
    t.rttTime = now;
    t.rttSeq = end;
  }
  emitSeg(t, emit, s, fin ? FIN : 0, payload, now);
  if (seqGt(end, t.sndMax)) t.sndMax = end;
  // RFC 6298 section 5.1.
  if (t.rtxAt === NEVER) t.rtxAt = now + t.rtt.rto;
  t.persistAt = NEVER;
}

/** Retransmissions first (RFC 6582 / SACK holes per RFC 2018), then new data as the windows allow. */
function sendData(t: Tcb, now: number, emit: Emit): void {
  while (t.forceRexmit || (t.inRecovery && t.rexmitQuota > 0)) {
    const forced = t.forceRexmit;
    t.forceRexmit = false;
    const s = t.sacked.skip(forced ? t.sndUna : seqMax(t.highRxt, t.sndUna));
    // Outside a forced retransmission only holes below the highest SACKed byte are known to be lost.
    const limit = forced ? t.sndMax : t.sacked.highest(t.sndUna);
    if (!seqLt(s, limit)) {
      if (!forced) t.rexmitQuota = 0;
      continue;
    }
    if (!forced) t.rexmitQuota--;
    const end = seqMin(seqMin(seqAdd(s, segRoom(t)), t.sacked.nextStart(s, t.sndMax)), t.sndMax);
    sendRange(t, s, end, now, emit);
    if (seqGt(end, t.highRxt)) t.highRxt = end;
    if (seqLt(t.sndNxt, end)) t.sndNxt = end;
  }

  const dataEnd = t.dataEnd;
  while (true) {
    const avail = seqDiff(dataEnd, t.sndNxt);
    const inFlight = seqDiff(t.sndNxt, t.sndUna);
    const wndRoom = seqDiff(seqAdd(t.sndUna, t.sndWnd), t.sndNxt);
    const room = segRoom(t);
    const n = Math.min(room, avail, wndRoom, t.cc.cwnd - inFlight);
    if (n <= 0) {
      // The FIN takes no buffer space at the peer: send it once all data is out, whatever the windows say.
      if (avail === 0 && t.finQueued && wndRoom >= 0) {
        sendRange(t, t.sndNxt, seqAdd(dataEnd, 1), now, emit);
        t.sndNxt = seqAdd(dataEnd, 1);
      }
      break;
    }
    // RFC 9293 section 3.8.6.2.1 sender-side SWS avoidance (Nagle is off: a short tail goes out at once).
    if (n < avail && n < room && inFlight > 0 && n < t.maxSndWnd >> 1) break;
    let end = seqAdd(t.sndNxt, n);
    if (t.finQueued && end === dataEnd) end = seqAdd(end, 1);
    sendRange(t, t.sndNxt, end, now, emit);
    t.sndNxt = end;
    if (seqGt(end, dataEnd)) break;
  }

  // RFC 9293 section 3.8.6.1: with a zero window and data waiting, the persist timer probes the peer.
  if (t.sndWnd === 0 && t.sndUna === t.sndMax && seqDiff(dataEnd, t.sndNxt) > 0) {
    if (t.persistAt === NEVER && !t.probePending) t.persistAt = now + persistInterval(t);
  }
  if (t.probePending) {
    // Like Linux's tcp_xmit_probe_skb: an old sequence number (SND.UNA-1) forces an ACK that carries the
    // current window, without putting data beyond the window on the wire.
    t.probePending = false;
    t.counters.zeroWindowProbes++;
    emitSeg(t, emit, seqAdd(t.sndUna, -1), 0, EMPTY, now);
    t.persistBackoff++;
    t.persistAt = now + persistInterval(t);
  }
}

/** The persist interval: the RTO, doubled per unanswered probe, capped at the maximum RTO. */
function persistInterval(t: Tcb): number {
  return Math.min(t.rtt.maxRto, t.rtt.rto * 2 ** Math.min(t.persistBackoff, 16));
}
