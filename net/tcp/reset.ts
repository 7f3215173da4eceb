/** The reply to a segment that matches no connection (RFC 9293 section 3.10.7.1, "If the state is CLOSED"). */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";
import { seqAdd } from "./seq.ts";

const { FIN, SYN, RST, ACK } = TcpFlags;

/**
 * The RST answering `seg`, or null when none is due (an RST is never answered). With ACK set in `seg`:
 * `<SEQ=SEG.ACK><CTL=RST>`; otherwise `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`. Ports are swapped; the
 * caller swaps the addresses.
 */
export function rstForUnmatched(seg: TcpRepr): TcpRepr | null {
  if (seg.flags & RST) return null;
  const base = {
    srcPort: seg.dstPort,
    dstPort: seg.srcPort,
    window: 0,
    urgent: 0,
    payload: new Uint8Array(0),
  };
  if (seg.flags & ACK) return { ...base, seq: seg.ack, ack: 0, flags: RST };
  const len = seg.payload.length + (seg.flags & SYN ? 1 : 0) + (seg.flags & FIN ? 1 : 0);
  return { ...base, seq: 0, ack: seqAdd(seg.seq, len), flags: RST | ACK };
}
