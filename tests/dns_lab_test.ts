/**
 * tp's resolver against the real lab: the cluster's dnsmasq as the cluster DNS, the workstation's dnsmasq as the
 * laptop's resolver. Runs on a lab of its own (tests/dns_lab.ts), brought up and torn down here. The daemon's TUN
 * path comes later; here the resolver listens on a kernel socket in the workstation namespace.
 */
import assert from "node:assert/strict";
import { requireTools } from "./lab.ts";
import { dig, downDnsLab, runLoad, serveOptions, startDnsChild, TP_DNS, upDnsLab } from "./dns_lab.ts";
import { exec, inNs } from "./lab.ts";

Deno.test("tp's resolver on the lab answers as the cluster DNS does and keeps the workstation's names", async (t) => {
  requireTools("ip", "dnsmasq", "dig", "getent");
  const cfg = await upDnsLab();
  const dns = cfg.clusterDns.ip;
  try {
    const child = await startDnsChild(cfg, serveOptions(cfg, { timeoutMs: 1_500 }));
    try {
      await t.step("cluster names answer A, AAAA, SRV, TXT, PTR and NXDOMAIN exactly as dnsmasq does", async () => {
        const cases: string[][] = [
          ["echo.default.svc.cluster.local", "A"],
          ["echo.default.svc.cluster.local", "AAAA"],
          ["iperf.default.svc.cluster.local", "A"],
          ["_http._tcp.echo.default.svc.cluster.local", "SRV"],
          ["echo.default.svc.cluster.local", "TXT"],
          ["-x", "198.19.0.10"],
          ["-x", "2001:db8:5::10"],
          ["-x", "198.19.128.10"],
          ["nope.default.svc.cluster.local", "A"],
          ["echo.default.svc.cluster.local", "MX"],
        ];
        for (const args of cases) {
          const direct = await dig(cfg, "cluster", dns, args);
          const viaTp = await dig(cfg, "ws", TP_DNS, args);
          assert.deepEqual(viaTp, { ...direct, ms: viaTp.ms }, args.join(" "));
          assert.notEqual(direct.status, "", args.join(" "));
        }
        assert.equal((await dig(cfg, "cluster", dns, ["nope.default.svc.cluster.local"])).status, "NXDOMAIN");
      });

      await t.step("short names are asked as their FQDN and answered under the name asked", async () => {
        const fqdn = await dig(cfg, "cluster", dns, ["echo.default.svc.cluster.local", "A"]);
        for (const short of ["echo.default", "echo.default.svc", "echo"]) {
          const r = await dig(cfg, "ws", TP_DNS, [short, "A"]);
          assert.equal(r.status, "NOERROR", short);
          assert.deepEqual(
            r.answers,
            fqdn.answers.map((a) => a.replace("echo.default.svc.cluster.local.", `${short}.`)),
          );
        }
        // Neither the cluster nor the workstation's DNS has it: the cluster's NXDOMAIN, under the name asked.
        assert.equal((await dig(cfg, "ws", TP_DNS, ["nope.default", "A"])).status, "NXDOMAIN");
        const srv = await dig(cfg, "ws", TP_DNS, ["_http._tcp.echo.default", "SRV"]);
        assert.match(
          srv.answers[0]!,
          /^_http\._tcp\.echo\.default\. TTL IN SRV 0 100 8080 echo\.default\.svc\.cluster\.local\.$/,
        );
      });

      await t.step("the workstation's own name still resolves through the upstream path", async () => {
        const before = await child.counters();
        const r = await dig(cfg, "ws", TP_DNS, [cfg.workstationDns.hostName, "A"]);
        assert.equal(r.status, "NOERROR");
        assert.deepEqual(r.answers, [`${cfg.workstationDns.hostName}. TTL IN A ${cfg.workstationDns.hostIp}`]);
        const after = await child.counters();
        assert.equal(after.upstream! - before.upstream!, 1);
        assert.equal(after.cluster! - before.cluster!, 0);
      });

      await t.step("a malformed DNS packet is dropped and counted, and the next query is answered", async () => {
        const before = (await child.counters()).malformed!;
        const r = await inNs("ws", ["bash", "-c", `printf '\\x01\\x02\\x03' > /dev/udp/${TP_DNS}/53`], {}, cfg);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((await dig(cfg, "ws", TP_DNS, ["echo.default", "A"])).status, "NOERROR");
        assert.equal((await child.counters()).malformed, before + 1);
      });

      await t.step("10,000 queries from 8 concurrent clients are all answered", async () => {
        const result = await runLoad(cfg, {
          server: TP_DNS,
          port: 53,
          clients: 8,
          total: 10_000,
          timeoutMs: 3_000,
          questions: [
            ["echo.default.svc.cluster.local", 1],
            ["echo.default", 28],
            ["_http._tcp.echo.default.svc.cluster.local", 33],
            ["nope.default.svc.cluster.local", 1],
            [cfg.workstationDns.hostName, 1],
          ],
        });
        assert.equal(result.sent, 10_000);
        assert.equal(result.answered, 10_000, JSON.stringify(result));
        assert.equal(result.lost, 0);
        assert.deepEqual(result.rcodes, { NOERROR: 8_000, NXDOMAIN: 2_000 });
      });

      await t.step("a cluster DNS that does not answer gives SERVFAIL within the timeout", async () => {
        // Send the cluster DNS's traffic to a next hop that never answers: a stopped cluster DNS, seen from tp.
        const ws = cfg.namespaces.workstation;
        const blackhole = ["ip", "-n", ws, "route", "replace", `${dns}/32`, "via", cfg.veth.silentNextHop];
        assert.equal((await exec(blackhole)).code, 0);
        try {
          const r = await dig(cfg, "ws", TP_DNS, ["gone.default.svc.cluster.local", "A"]);
          assert.equal(r.status, "SERVFAIL");
          assert.ok(r.ms < 1_500 + 1_000, `answered after ${r.ms.toFixed(0)} ms`);
          assert.ok((await child.counters()).timeouts! >= 1);
        } finally {
          await exec(["ip", "-n", ws, "route", "replace", `${dns}/32`, "via", cfg.veth.clusterIp]);
        }
      });
    } finally {
      const report = await child.quit();
      assert.equal(report.restore, null);
    }
  } finally {
    await downDnsLab(cfg);
  }
});
