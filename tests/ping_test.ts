/**
 * `ping` through tp on the lab: echo requests from the workstation's ping go through tp's TUN to the manager, which
 * sends them from its ICMP socket in the cluster namespace; the replies come back with ping's id and sequence.
 */
import assert from "node:assert/strict";
import { labService, requireTools } from "./lab.ts";
import { inNs, LAB, tp, whileConnected } from "./connect_fixture.ts";

const echo = labService(LAB, "echo");

Deno.test("ping -c 3 gets 3 replies from a service IP and a pod IP, IPv4 and IPv6, and none from the silent address", async () => {
  requireTools("ping");
  await whileConnected(async () => {
    for (const ip of [echo.serviceIp, echo.podIp, echo.serviceIp6, echo.podIp6]) {
      const r = await inNs("ws", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "5", ip], { timeoutMs: 20_000 });
      assert.equal(r.code, 0, `ping ${ip}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /3 packets transmitted, 3 received/);
      for (const seq of [1, 2, 3]) assert.match(r.stdout, new RegExp(`from ${ip}: icmp_seq=${seq} `));
    }
    const silent = await inNs("ws", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", LAB.silentIp], {
      timeoutMs: 20_000,
    });
    assert.notEqual(silent.code, 0);
    assert.match(silent.stdout, /2 packets transmitted, 0 received/);
    const s = await tp(["status", "-o", "json"]);
    const ping = JSON.parse(s.stdout).ping;
    assert.equal(ping.replies, 12);
    assert.equal(ping.unavailable, "");
    assert.match((await tp(["status"])).stdout, /ping: +14 echo requests, 12 replies/);
  });
});
