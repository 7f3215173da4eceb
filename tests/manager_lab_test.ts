/**
 * The manager and the tunnel on the lab: `tp manager` in the cluster namespace, the client
 * (tests/manager_lab_client.ts) in the workstation namespace, everything over the one veth.
 */
import assert from "node:assert/strict";
import { ensureLab, inNs, LAB, labService, ROOT } from "./lab.ts";

const PORT = 8182; // not LAB.manager.port, which the connect tests may use at the same time
const URL_ = `http://${LAB.manager.ip}:${PORT}`;
const DENO = `${ROOT}/scripts/deno`;

async function withManager(fn: () => Promise<void>, extra: string[] = []): Promise<void> {
  await ensureLab();
  const args = [
    "netns",
    "exec",
    LAB.namespaces.cluster,
    DENO,
    "run",
    "-A",
    `${ROOT}/cli/main.ts`,
    "manager",
    "--listen",
    `${LAB.manager.ip}:${PORT}`,
    "--dns-server",
    `${LAB.clusterDns.ip}:${LAB.clusterDns.port}`,
    "--dial-timeout",
    "1s",
    "--session-ttl",
    "3s",
    ...LAB.subnets.pod.flatMap((c) => ["--pod-cidr", c]),
    ...LAB.subnets.service.flatMap((c) => ["--service-cidr", c]),
    ...extra,
  ];
  const child = new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).spawn();
  const logs = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    const deadline = Date.now() + 30_000;
    while (!text.includes("manager listening")) {
      if (Date.now() > deadline) throw new Error(`manager did not start: ${text}`);
      const r = await logs.read();
      if (r.done) throw new Error(`manager exited: ${text}`);
      text += r.value;
    }
    const drain = (async () => {
      while (!(await logs.read()).done) { /* keep the pipe flowing */ }
    })();
    await fn();
    child.kill("SIGTERM");
    await drain;
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
    await child.status;
  }
}

async function client(scenario: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  const r = await inNs("ws", [
    DENO,
    "run",
    "-A",
    `${ROOT}/tests/manager_lab_client.ts`,
    scenario,
    URL_,
    JSON.stringify(LAB),
  ], {
    timeoutMs,
  });
  assert.equal(r.code, 0, `client ${scenario} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

Deno.test({
  name: "manager on the lab: TCP and UDP echo carry 50 MB each way, verified by hash",
  sanitizeResources: false,
  fn: () =>
    withManager(async () => {
      const tcp = await client("tcp50") as Record<string, { sent: string; received: string; end: string }>;
      assert.equal(tcp.service!.received, tcp.service!.sent);
      assert.equal(tcp.service!.end, "closed");
      assert.equal(tcp.pod6!.received, tcp.pod6!.sent);
      const udp = await client("udp50") as { sent: string; received: string };
      assert.equal(udp.received, udp.sent);
    }),
});

Deno.test({
  name: "manager on the lab: dial results, 1000 streams (250 at a time), and DNS answers from dnsmasq",
  sanitizeResources: false,
  fn: () =>
    withManager(async () => {
      const d = await client("dial") as Record<string, { result: string; ms: number }>;
      assert.equal(d.refused!.result, "refused");
      assert.ok(d.refused!.ms < 500, `refused took ${d.refused!.ms} ms`);
      assert.equal(d.timeout!.result, "timeout");
      assert.ok(d.timeout!.ms >= 900, `timeout after ${d.timeout!.ms} ms`);
      assert.equal(d.denied!.result, "denied");
      assert.equal(d.ok!.result, "ok");

      const many = await client("many") as { streams: number; ok: number };
      assert.equal(many.ok, 1000);

      const echo = labService(LAB, "echo");
      type Answer = { id: boolean; rcode: string; answers: { type: string; data: string }[] };
      const dns = await client("dns") as Record<string, Answer>;
      for (const a of Object.values(dns)) assert.ok(a.id, "the answer keeps the query's id");
      assert.deepEqual(dns.a!.answers, [{ type: "A", data: JSON.stringify(echo.serviceIp) }]);
      assert.deepEqual(dns.aaaa!.answers, [{ type: "AAAA", data: JSON.stringify(echo.serviceIp6) }]);
      assert.equal(dns.srv!.answers[0]?.type, "SRV");
      assert.match(dns.srv!.answers[0]!.data, /"port":8080/);
      assert.equal(dns.ptr!.answers[0]?.type, "PTR");
      assert.match(dns.ptr!.answers[0]!.data, /echo\.default\.svc\.cluster\.local/);
      assert.equal(dns.nx!.rcode, "NXDOMAIN");
    }),
});

Deno.test({
  name: "manager on the lab: a wrong token is refused and /metrics counts it",
  sanitizeResources: false,
  fn: () =>
    withManager(async () => {
      const r = await inNs("ws", [
        DENO,
        "run",
        "-A",
        `${ROOT}/tests/manager_lab_client.ts`,
        "dns",
        URL_,
        JSON.stringify(LAB),
      ], {
        env: { TP_TEST_TOKEN: "wrong" },
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /UNAUTHENTICATED/);
      const m = await inNs("cluster", ["curl", "-s", `http://${LAB.manager.ip}:${PORT}/metrics`]);
      assert.match(m.stdout, /tp_manager_rejected_total\{reason="token"\} 1/);
    }, ["--token", "right"]),
});
