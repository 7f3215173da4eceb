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

Deno.test("formatStatus() lists this machine's intercepts and each mount's state with its reason", () => {
  const text = formatStatus({
    ...base,
    intercepts: {
      active: [{ workload: "web", appPort: 8080, localPort: 18080, podName: "web-0" }],
      mounts: [
        { workload: "web", dir: "/home/me/web", state: "mounted", remounts: 1 },
        { workload: "api", dir: "/home/me/api", state: "reconnecting", reason: "its stream ended (stream reset)" },
        { workload: "db", dir: "/home/me/db", state: "failed", reason: "the agent refused the mount" },
      ],
    },
  });
  const lines = text.split("\n").filter((l) => / {2}intercepts:|^ {15}\S/.test(l));
  assert.deepEqual(lines, [
    "  intercepts:  web port 8080 -> 127.0.0.1:18080 (pod web-0)",
    "               web's volumes at /home/me/web: mounted (made again 1x)",
    "               api's volumes at /home/me/api: reconnecting (its stream ended (stream reset))",
    "               db's volumes at /home/me/db: failed: the agent refused the mount",
  ]);
});
