import assert from "node:assert/strict";
import { formatStatus } from "./status_text.ts";

const base = {
  pid: 1,
  startedAt: new Date().toISOString(),
  manager: { url: "http://198.18.0.2:8081", state: "connected", version: "0.1.0", session: "abcdef0123" },
  device: { name: "tp0", mtu: 65535, readPackets: 1, writtenPackets: 1 },
  dns: {},
};

Deno.test("formatStatus() shows the router's drops and the bridge's dropped UDP datagrams on one line", () => {
  const text = formatStatus({
    ...base,
    connections: { udpDatagramsDropped: 7 },
    router: { drops: { tcpInProgressLimit: 12, udpHeldDiscarded: 3, udpOutboundNoFlow: 0 }, tcp: {} },
  });
  const line = text.split("\n").find((l) => l.trim().startsWith("drops:"));
  assert.equal(line, "  drops:       tcpInProgressLimit 12, udpHeldDiscarded 3, udpDatagramsDropped 7");
});

Deno.test("formatStatus() says none when nothing was dropped", () => {
  const text = formatStatus({ ...base, connections: { udpDatagramsDropped: 0 }, router: { drops: {}, tcp: {} } });
  assert.match(text, /^ {2}drops: {7}none$/m);
});
