/** Timer expiry: retransmission (RFC 6298 section 5), persist, delayed ACK, keepalive, TIME-WAIT, held SYN. */
import { queueRst } from "./_input.ts";
import type { Tcb } from "./_tcb.ts";
import { seqAdd, seqDiff } from "./seq.ts";

const NEVER = Number.POSITIVE_INFINITY;

/** Runs every timer of `t` that is due at `now`; segments they call for go out on the next flush. */
export function timersExpire(t: Tcb, now: number): void {
  if (t.closeAt <= now) {
    t.closeAt = NEVER;
    if (t.state === "TIME-WAIT") t.setState("CLOSED", "TIME-WAIT expired");
    else if (t.state === "SYN-HELD") {
      t.counters.heldSynTimeouts++;
      t.counters.connectionsRefused++;
      queueRst(t, 0, seqAdd(t.irs, 1));
      t.fail("timeout", "held SYN neither accepted nor refused in time");
    }
  }
  if (t.rtxAt <= now) {
    t.rtxAt = NEVER;
    retransmissionTimeout(t, now);
  }
  if (t.persistAt <= now) {
    t.persistAt = NEVER;
    if (t.sndWnd === 0) t.probePending = true;
  }
  if (t.ackAt <= now) {
    t.ackAt = NEVER;
    t.ackNow = true;
  }
  if (t.keepAt <= now) {
    t.keepAt = NEVER;
    keepaliveTimeout(t, now);
  }
}

/** RFC 6298 section 5.4-5.6 with RFC 5681 section 3.1's loss window and RFC 6582's `recover` update. */
function retransmissionTimeout(t: Tcb, now: number): void {
  const synState = t.state === "SYN-SENT" || t.state === "SYN-RECEIVED";
  if (!synState && t.sndUna === t.sndMax) return;
  if (t.state === "CLOSED" || t.state === "SYN-HELD" || t.state === "TIME-WAIT") return;
  t.counters.rtoExpiries++;
  t.retries++;
  if (t.retries > (synState ? t.cfg.synRetries : t.cfg.maxRetries)) {
    t.counters.timeouts++;
    if (t.state !== "SYN-SENT") queueRst(t, t.sndMax, t.rcvNxt);
    t.fail("timeout", `${t.retries - 1} retransmissions unanswered`);
    return;
  }
  t.rtt.backoff();
  t.rttTime = -1;
  t.lastRtoTime = now;
  if (synState) {
    t.sndNxt = t.iss; // resend SYN / SYN-ACK on flush
    return;
  }
  t.cc.onTimeout(seqDiff(t.sndMax, t.sndUna), !t.timeoutInRow);
  t.timeoutInRow = true;
  t.inRecovery = false;
  t.dupAcks = 0;
  t.rexmitQuota = 0;
  t.recover = t.sndMax;
  // RFC 2018 section 8: after a timeout the receiver may have reneged; start from SND.UNA, forget SACKs.
  t.sacked.clear();
  t.highRxt = t.sndUna;
  t.sndNxt = t.sndUna;
  t.forceRexmit = true;
  t.rtxAt = now + t.rtt.rto;
}

/** RFC 9293 section 3.8.4 / RFC 1122 section 4.2.3.6. */
function keepaliveTimeout(t: Tcb, now: number): void {
  const ka = t.cfg.keepalive;
  if (ka === null) return;
  if (t.state !== "ESTABLISHED" && t.state !== "CLOSE-WAIT" && t.state !== "FIN-WAIT-2") return;
  if (t.sndUna !== t.sndMax) {
    // Data outstanding: the retransmission timer watches the peer.
    t.keepAt = now + ka.idleMs;
    return;
  }
  if (t.keepProbes >= ka.probes) {
    t.counters.timeouts++;
    queueRst(t, t.sndMax, t.rcvNxt);
    t.fail("timeout", "keepalive unanswered");
    return;
  }
  t.keepProbes++;
  t.keepProbePending = true;
  t.keepAt = now + ka.intervalMs;
}
