/**
 * resolv.conf mode on a lab of its own: tp's resolver in the workstation namespace rewrites that namespace's
 * /etc/resolv.conf (a bind mount of /etc/netns/<id>-ws/resolv.conf under `ip netns exec`, which is why the file is
 * rewritten in place), the C library then resolves cluster names through tp, and the file comes back byte for byte
 * on quit, and after kill -9 through the crash repair.
 */
import assert from "node:assert/strict";
import { downDnsLab, runRepair, serveOptions, startDnsChild, TP_DNS, upDnsLab } from "./dns_lab.ts";
import { inNs, requireTools } from "./lab.ts";
import { parseResolvConf } from "../cli/dns/resolv_conf.ts";

Deno.test("resolv.conf mode points the workstation at tp and restores its resolv.conf byte for byte", async (t) => {
  requireTools("ip", "dnsmasq", "getent");
  const cfg = await upDnsLab();
  const file = `/etc/netns/${cfg.namespaces.workstation}/resolv.conf`;
  try {
    const original = await Deno.readFile(file);
    const options = serveOptions(cfg, { resolvConf: true });

    await t.step("getent resolves cluster names, short names and the workstation's own name through tp", async () => {
      const child = await startDnsChild(cfg, options);
      try {
        assert.deepEqual(child.ready.upstreams, [cfg.workstationDns.ip]);
        const conf = parseResolvConf(await Deno.readTextFile(file));
        assert.deepEqual(conf.nameservers, [TP_DNS]);
        assert.deepEqual(conf.search, [
          "default.svc.cluster.local",
          "svc.cluster.local",
          "cluster.local",
          cfg.workstationDns.searchDomain,
        ]);
        const echo = cfg.services.find((s) => s.name === "echo")!;
        for (const name of ["echo.default", "echo.default.svc.cluster.local", "echo"]) {
          const r = await inNs("ws", ["getent", "ahostsv4", name], {}, cfg);
          assert.equal(r.code, 0, `getent ahostsv4 ${name}: ${r.stderr}`);
          assert.match(r.stdout, new RegExp(`^${echo.serviceIp.replaceAll(".", "\\.")}\\s`), name);
        }
        const hosts = await inNs("ws", ["getent", "hosts", "echo.default"], {}, cfg);
        assert.match(
          hosts.stdout,
          new RegExp(`^(${echo.serviceIp6}|${echo.serviceIp.replaceAll(".", "\\.")})\\s+echo\\.default`),
        );
        const laptop = await inNs("ws", ["getent", "hosts", cfg.workstationDns.hostName], {}, cfg);
        assert.match(laptop.stdout, new RegExp(`^${cfg.workstationDns.hostIp.replaceAll(".", "\\.")}\\s`));
        const nope = await inNs("ws", ["getent", "hosts", "nope.default.svc.cluster.local"], {}, cfg);
        assert.equal(nope.code, 2, "getent exits 2 for a name that does not exist");
      } finally {
        const report = await child.quit();
        assert.equal(report.restore?.action, "restored");
      }
      assert.deepEqual(await Deno.readFile(file), original);
    });

    await t.step("after kill -9, the crash repair restores resolv.conf byte for byte and says so", async () => {
      const child = await startDnsChild(cfg, options);
      assert.notDeepEqual(await Deno.readFile(file), original);
      await child.crash();
      assert.notDeepEqual(await Deno.readFile(file), original);
      const said = await runRepair(cfg, options.stateDir);
      assert.match(
        said ?? "",
        /tp found DNS settings left by a tp that is gone: restored the original \/etc\/resolv\.conf/,
      );
      assert.deepEqual(await Deno.readFile(file), original);
      assert.equal(await runRepair(cfg, options.stateDir), null);
    });

    await t.step("after kill -9, the next start repairs first and still saves the true original", async () => {
      const first = await startDnsChild(cfg, options);
      await first.crash();
      const second = await startDnsChild(cfg, options);
      try {
        assert.match(second.ready.repaired ?? "", /restored the original/);
        assert.deepEqual(second.ready.upstreams, [cfg.workstationDns.ip]);
      } finally {
        assert.equal((await second.quit()).restore?.action, "restored");
      }
      assert.deepEqual(await Deno.readFile(file), original);
    });
  } finally {
    await downDnsLab(cfg);
  }
});
