import assert from "node:assert/strict";
import { DialCode, type ManagerSession, type Tunnel, TunnelResetError } from "../../proto/mod.ts";
import type { RefuseReason, UdpFlow } from "../../net/router/owner.ts";
import { bridgeUdp, newBridgeStats } from "./bridge.ts";

/** A dialed UDP tunnel whose first read fails with `error`, and a session that opens it. */
function sessionWith(error: Error) {
  const resets: string[] = [];
  const tunnel = {
    dial: { code: DialCode.ok, message: "" },
    done: false,
    writeBuffered: 0,
    write: () => true,
    read: () => Promise.reject(error),
    reset: (reason: string) => void resets.push(reason),
  } as unknown as Tunnel;
  const session = { openTunnel: () => Promise.resolve(tunnel) } as unknown as ManagerSession;
  return { session, resets };
}

/** A UDP flow that records what the bridge did to it. */
function recordedFlow() {
  const did: string[] = [];
  const flow = {
    flow: { family: 4, src: "198.18.0.1", srcPort: 40000, dst: "198.19.0.10", dstPort: 53 },
    accept: () => void did.push("accept"),
    refuse: (reason: RefuseReason) => void did.push(`refuse ${reason}`),
    send: () => void did.push("send"),
    close: () => void did.push("close"),
  } as unknown as UdpFlow;
  return { flow, did };
}

/** Lets the bridge's read loop see the tunnel's failure. */
const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("bridgeUdp() answers a reset with the code REFUSED with the app's ICMP port unreachable", async () => {
  const { session } = sessionWith(new TunnelResetError("whatever the words", DialCode.refused));
  const { flow, did } = recordedFlow();
  await bridgeUdp(() => session, flow, newBridgeStats());
  await settle();
  assert.deepEqual(did, ["accept", "refuse refused"]);
});

Deno.test("bridgeUdp() takes a plain reset for the link, even when its words say refused: the flow waits", async () => {
  const { session } = sessionWith(new TunnelResetError("refused: the destination port is closed"));
  const { flow, did } = recordedFlow();
  await bridgeUdp(() => session, flow, newBridgeStats());
  await settle();
  assert.deepEqual(did, ["accept"]);
});
