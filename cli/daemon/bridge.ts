/**
 * Joins the router's connections to tunnel streams: each TCP connection or UDP flow an app opens to the cluster
 * becomes one Tunnel stream to the traffic-manager. Backpressure both ways: while the tunnel's write buffer is full
 * the router stops taking the app's bytes (its TCP window closes); while the app's send buffer is full the bridge
 * stops reading the tunnel (the HTTP/2 window closes).
 */
import { DialCode, dialCodeName, type ManagerSession, type Tunnel, TunnelResetError } from "../../proto/mod.ts";
import type { Flow, RefuseReason, TcpSocket, UdpFlow } from "../../net/router/owner.ts";

export interface BridgeStats {
  tcpOpened: number;
  tcpRefused: number;
  tcpActive: number;
  udpOpened: number;
  udpRefused: number;
  udpActive: number;
  bytesInbound: number;
  bytesOutbound: number;
  /** Inbound datagrams dropped because their tunnel's buffer was full, or no tunnel carried the flow (the link was down). */
  udpDatagramsDropped: number;
  /** UDP flows given a new tunnel after the link to the manager broke and came back. */
  udpReopened: number;
  dialResults: Record<string, number>;
}

/** Bytes a UDP flow's tunnel may hold unsent before inbound datagrams are dropped (a socket buffer's worth). */
const UDP_BUFFER = 1 << 20;

export function newBridgeStats(): BridgeStats {
  return {
    tcpOpened: 0,
    tcpRefused: 0,
    tcpActive: 0,
    udpOpened: 0,
    udpRefused: 0,
    udpActive: 0,
    bytesInbound: 0,
    bytesOutbound: 0,
    udpDatagramsDropped: 0,
    udpReopened: 0,
    dialResults: {},
  };
}

function refuseReason(code: number): RefuseReason {
  switch (code) {
    case DialCode.refused:
      return "refused";
    case DialCode.timeout:
      return "timeout";
    case DialCode.denied:
      return "denied";
    default:
      return "unreachable";
  }
}

function endpoints(flow: Flow) {
  return { source: { ip: flow.src, port: flow.srcPort }, destination: { ip: flow.dst, port: flow.dstPort } };
}

async function open(
  session: ManagerSession,
  protocol: "tcp" | "udp",
  flow: Flow,
  stats: BridgeStats,
): Promise<Tunnel | RefuseReason> {
  let t: Tunnel;
  try {
    // TCP streams are resumable: they survive a broken connection that the link resumes (link.ts).
    t = await session.openTunnel({ protocol, ...endpoints(flow) }, { resumable: protocol === "tcp" });
  } catch {
    stats.dialResults["error"] = (stats.dialResults["error"] ?? 0) + 1;
    return "unreachable";
  }
  const name = dialCodeName(t.dial.code);
  stats.dialResults[name] = (stats.dialResults[name] ?? 0) + 1;
  if (t.dial.code === DialCode.ok) return t;
  t.reset("not dialed");
  return refuseReason(t.dial.code);
}

/** Carries one TCP connection; returns once it is set up (the rest runs on its own). */
export async function bridgeTcp(session: ManagerSession, sock: TcpSocket, stats: BridgeStats): Promise<void> {
  // The router may close the socket while the dial runs (its held SYN timed out, or a flood's fairness evicted it):
  // then the tunnel has no app to carry and is reset as soon as it opens.
  let closed = false;
  sock.onClose = () => (closed = true);
  const t = await open(session, "tcp", sock.flow, stats);
  if (typeof t === "string") {
    stats.tcpRefused++;
    sock.refuse(t);
    return;
  }
  if (closed) return t.reset("the connection closed while dialing");
  stats.tcpOpened++;
  stats.tcpActive++;
  let paused = false;
  let writable: (() => void) | undefined;
  sock.onData = (data) => {
    if (paused) return false;
    if (t.done) {
      // The cluster side is gone (it reset, or both directions ended): the app's bytes have nowhere to go, so the
      // app gets an RST, as the kernel answers a write to a closed socket.
      sock.abort();
      return true;
    }
    stats.bytesInbound += data.length;
    if (!t.write(data)) {
      paused = true;
      t.drained().then(() => {
        paused = false;
        if (!closed) sock.resume();
      });
    }
    return true;
  };
  sock.onEnd = () => t.closeWrite();
  sock.onReset = (reason) => t.reset(reason);
  sock.onWritable = () => {
    const w = writable;
    writable = undefined;
    w?.();
  };
  sock.onClose = () => {
    closed = true;
    stats.tcpActive--;
    t.reset("the connection closed");
    sock.onWritable();
  };
  sock.accept();
  (async () => {
    try {
      for (let c = await t.read(); c && !closed; c = await t.read()) {
        stats.bytesOutbound += c.length;
        for (let off = sock.write(c); off < c.length && !closed; off += sock.write(c.subarray(off))) {
          await new Promise<void>((r) => (writable = r));
        }
        // The FIN that came with the last payload goes out in the same segment (one packet fewer per response).
        if (t.atEnd) break;
      }
      if (!closed) sock.end();
    } catch (e) {
      if (!closed) sock.abort();
      if (!(e instanceof TunnelResetError)) t.reset("read failed");
    }
  })();
}

/**
 * Carries one UDP flow; the first datagram waits in the router until the tunnel is dialed. The flow outlives its
 * tunnel when the link to the manager breaks: datagrams while no tunnel carries it are dropped (and counted), as a
 * network would drop them, and the next one after the link is back opens a new tunnel on the current session, so the
 * app's flow carries on (UDP has no state to resume).
 */
export async function bridgeUdp(
  session: () => ManagerSession,
  flow: UdpFlow,
  stats: BridgeStats,
): Promise<void> {
  let closed = false;
  flow.onClose = () => (closed = true); // ended while the dial runs: the tunnel is reset as soon as it opens
  const first = await open(session(), "udp", flow.flow, stats);
  if (typeof first === "string") {
    stats.udpRefused++;
    flow.refuse(first);
    return;
  }
  if (closed) return first.reset("the flow ended while dialing");
  stats.udpOpened++;
  stats.udpActive++;
  let t: Tunnel | undefined = first;
  let reopening = false;
  const reopen = async () => {
    reopening = true;
    const next = await open(session(), "udp", flow.flow, stats);
    reopening = false;
    if (typeof next === "string") return; // still no way through: the next datagram tries again
    if (closed) return next.reset("the flow ended");
    stats.udpReopened++;
    t = next;
    void carry(next);
  };
  flow.onDatagram = (d) => {
    // UDP has no backpressure of its own: while the tunnel holds UDP_BUFFER bytes unsent, a datagram is dropped (and
    // counted), as a full socket buffer would drop it, instead of queueing without bound.
    if (!t || t.done || t.writeBuffered + d.length > UDP_BUFFER) {
      stats.udpDatagramsDropped++;
      if (!t && !reopening) void reopen();
      return;
    }
    stats.bytesInbound += d.length;
    t.write(d);
  };
  flow.onClose = () => {
    closed = true;
    stats.udpActive--;
    t?.reset("the flow ended");
  };
  const carry = async (tunnel: Tunnel) => {
    try {
      for (let d = await tunnel.read(); d && !closed; d = await tunnel.read()) {
        stats.bytesOutbound += d.length;
        flow.send(d);
      }
      if (!closed) flow.close();
    } catch (e) {
      if (closed) return;
      // A reset with a code is the destination's answer (the manager's REFUSED: its port answered ICMP port
      // unreachable): the app hears it as it would hear a refused dial.
      if (e instanceof TunnelResetError && e.code !== DialCode.unspecified) return flow.refuse(refuseReason(e.code));
      // Anything else is the link (a broken connection, a session that ended): the flow waits for the next datagram.
      if (t === tunnel) t = undefined;
    }
  };
  flow.accept();
  void carry(first);
}
