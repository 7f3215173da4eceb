/**
 * `ping` to cluster addresses: a router hook that takes each ICMP or ICMPv6 echo request from the TUN, has the
 * traffic-manager send it in the cluster (the Ping method), and injects the echo reply with the request's identifier
 * and sequence number, from the address pinged. The router answers nothing itself: no reply from the cluster, no
 * reply here, as on a network. Bounded: at most MAX_IN_FLIGHT echoes wait at once; others are dropped and counted.
 */
import type { Hook, HookVerdict } from "../../net/router/router.ts";
import {
  buildIcmpPacket,
  Icmpv4Type,
  Icmpv6Type,
  type IpAddress,
  type IpHeader,
  IpProtocol,
  ipToString,
  type PacketInfo,
} from "../../net/wire/mod.ts";

export const MAX_IN_FLIGHT = 64;
/** How long the manager waits for each reply; ping's own default interval is 1 s, its default wait 10 s. */
export const ECHO_TIMEOUT_MS = 4_000;

export interface EchoStats {
  requests: number;
  replies: number;
  /** No reply within the timeout (or the manager could not be asked). */
  unanswered: number;
  /** Dropped because MAX_IN_FLIGHT echoes were waiting. */
  dropped: number;
  /** Why the manager cannot send ICMP echo, as it said; "" while it can. */
  unavailable: string;
}

/** Sends one echo through the manager: its reply data, or null. */
export type EchoSender = (
  destination: string,
  data: Uint8Array,
  timeoutMs: number,
) => Promise<{ reply: Uint8Array | null; unavailable: string }>;

export class IcmpEchoHook implements Hook {
  readonly name = "icmp-echo";
  readonly stats: EchoStats = { requests: 0, replies: 0, unanswered: 0, dropped: 0, unavailable: "" };
  #inFlight = 0;

  /**
   * `send` asks the manager; `inject` writes the reply packet to the TUN; `log` hears once that the manager cannot
   * send ICMP echo.
   */
  constructor(
    readonly send: EchoSender,
    readonly inject: (packet: Uint8Array) => void,
    readonly log: (line: string) => void = () => {},
  ) {}

  inspect(packet: Uint8Array, info: Readonly<PacketInfo>): HookVerdict {
    const v4 = info.version === 4;
    if (info.protocol !== (v4 ? IpProtocol.ICMP : IpProtocol.ICMPV6)) return "accept";
    if (info.icmpType !== (v4 ? Icmpv4Type.ECHO_REQUEST : Icmpv6Type.ECHO_REQUEST) || info.icmpCode !== 0) {
      return "accept"; // other ICMP: the router counts and drops it
    }
    this.stats.requests++;
    if (this.#inFlight >= MAX_IN_FLIGHT) {
      this.stats.dropped++;
      return "drop-silently";
    }
    const off = info.transportOffset;
    const ident = (packet[off + 4]! << 8) | packet[off + 5]!;
    const seqNo = (packet[off + 6]! << 8) | packet[off + 7]!;
    const data = packet.slice(info.payloadOffset, info.payloadEnd);
    const app = info.srcAddress(packet);
    const pinged = info.dstAddress(packet);
    this.#inFlight++;
    void this.#echo(app, pinged, ident, seqNo, data).finally(() => this.#inFlight--);
    return "drop-silently";
  }

  async #echo(app: IpAddress, pinged: IpAddress, ident: number, seqNo: number, data: Uint8Array): Promise<void> {
    try {
      const { reply, unavailable } = await this.send(ipToString(pinged), data, ECHO_TIMEOUT_MS);
      if (unavailable !== this.stats.unavailable) {
        this.stats.unavailable = unavailable;
        if (unavailable) this.log(`ping: the traffic-manager cannot send ICMP echo: ${unavailable}`);
      }
      if (reply === null) {
        this.stats.unanswered++;
        return;
      }
      const ip = { src: pinged, dst: app } as IpHeader;
      const out = new Uint8Array((typeof app === "number" ? 20 : 40) + 8 + reply.length);
      const len = buildIcmpPacket(out, ip, { kind: "echoReply", ident, seqNo, data: reply });
      this.stats.replies++;
      this.inject(out.subarray(0, len));
    } catch {
      // The manager could not be asked (the link is down), or the reply does not fit a packet: no reply, as a lost
      // packet on a network.
      this.stats.unanswered++;
    }
  }
}
