/**
 * DNS through `tp connect` on the lab: the workstation's resolv.conf points at tp while connected, cluster names
 * answer as the cluster's dnsmasq does, every other name as before, and the file comes back byte for byte.
 */
import assert from "node:assert/strict";
import { labService } from "./lab.ts";
import { daemonPid, inNs, LAB, MANAGER_URL, tp, whileConnected } from "./connect_fixture.ts";

const echo = labService(LAB, "echo");
const RESOLV = `/etc/netns/${LAB.namespaces.workstation}/resolv.conf`;
const FQDN = "echo.default.svc.cluster.local";

/** dig's answer section (+short), from the workstation through tp, and from the cluster straight at dnsmasq. */
async function digBoth(args: string[]): Promise<[string, string]> {
  const opts = ["+time=5", "+tries=1", "+short"];
  const viaTp = await inNs("ws", ["dig", ...opts, ...args]);
  const direct = await inNs("cluster", ["dig", ...opts, `@${LAB.clusterDns.ip}`, ...args]);
  assert.equal(viaTp.code, 0, viaTp.stderr + viaTp.stdout);
  return [viaTp.stdout.trim(), direct.stdout.trim()];
}

Deno.test("cluster names resolve on the workstation as the cluster DNS answers them", async () => {
  await whileConnected(async () => {
    for (
      const q of [[FQDN, "A"], [FQDN, "AAAA"], [`_http._tcp.${FQDN}`, "SRV"], ["-x", echo.serviceIp], [FQDN, "TXT"]]
    ) {
      const [viaTp, direct] = await digBoth(q);
      assert.ok(direct.length > 0, `dnsmasq has an answer for ${q.join(" ")}`);
      assert.equal(viaTp, direct, `dig ${q.join(" ")}`);
    }
    const nx = await inNs("ws", ["dig", "+time=5", "+tries=1", "no-such.default.svc.cluster.local"]);
    assert.match(nx.stdout, /status: NXDOMAIN/);
    for (const name of ["echo.default", FQDN, "echo"]) {
      const g = await inNs("ws", ["getent", "ahostsv4", name]);
      assert.equal(g.code, 0, `getent ${name}: ${g.stderr}`);
      assert.match(g.stdout, new RegExp(`^${echo.serviceIp.replaceAll(".", "\\.")}\\s`), `getent ${name}`);
    }
    const c = await inNs("ws", [
      "curl",
      "-sS",
      "-4",
      "-m",
      "10",
      `http://echo.default:${echo.ports["http"]!.port}/by-name`,
    ]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(JSON.parse(c.stdout).host, `echo.default:${echo.ports["http"]!.port}`);
    const tcp = await inNs("ws", ["dig", "+tcp", "+time=5", "+tries=1", "+short", FQDN]);
    assert.equal(tcp.stdout.trim(), echo.serviceIp, "DNS over TCP");
  });
});

Deno.test("the workstation's own names keep resolving through its own resolver while connected", async () => {
  await whileConnected(async () => {
    const w = LAB.workstationDns;
    const g = await inNs("ws", ["getent", "hosts", w.hostName]);
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, new RegExp(`^${w.hostIp.replaceAll(".", "\\.")}\\s`));
    const s = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.deepEqual(s.dns.upstreams, [w.ip]);
    assert.ok(s.dns.upstream >= 1, "the query went to the workstation's resolver");
  });
});

Deno.test("resolv.conf is byte for byte the original after tp quit, and after a kill -9 of the daemon's process group then tp quit or connect", async () => {
  const original = await Deno.readFile(RESOLV);
  await whileConnected(async () => {
    const during = await Deno.readTextFile(RESOLV);
    assert.match(during, /^nameserver 198\.19\.0\.255$/m);
    assert.match(during, /^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/m);
    assert.equal((await tp(["quit"])).code, 0);
    assert.deepEqual(await Deno.readFile(RESOLV), original);

    for (const next of [["quit"], ["connect", "--manager-url", MANAGER_URL]]) {
      assert.equal((await tp(["connect", "--manager-url", MANAGER_URL])).code, 0);
      // The daemon leads its process group (setsid): this kills its resolv.conf guard too.
      Deno.kill(-(await daemonPid())!, "SIGKILL");
      await new Promise((r) => setTimeout(r, 200));
      assert.notDeepEqual(await Deno.readFile(RESOLV), original, "a killed daemon and guard cannot restore");
      const r = await tp(next);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /restored the original/);
      if (next[0] === "quit") assert.deepEqual(await Deno.readFile(RESOLV), original);
      else {
        assert.match(await Deno.readTextFile(RESOLV), /^nameserver 198\.19\.0\.255$/m);
        assert.equal((await tp(["quit"])).code, 0);
        assert.deepEqual(await Deno.readFile(RESOLV), original);
      }
    }
  });
  assert.deepEqual(await Deno.readFile(RESOLV), original);
});

Deno.test("a cluster DNS that does not answer gives SERVFAIL within the timeout", async () => {
  await whileConnected(async () => {
    const r = await inNs("ws", ["dig", "+time=8", "+tries=1", FQDN]);
    assert.match(r.stdout, /status: SERVFAIL/);
    assert.ok(r.ms < 7000, `SERVFAIL took ${Math.round(r.ms)} ms`);
  }, { managerArgs: ["--dns-server", `${LAB.silentIp}:53`, "--allow", `${LAB.silentIp}/32`] });
});

Deno.test("a malformed DNS packet is dropped and counted", async () => {
  await whileConnected(async () => {
    const before = JSON.parse((await tp(["status", "-o", "json"])).stdout).dns.malformed;
    await inNs("ws", ["socat", "-t", "0.3", "-", "UDP:198.19.0.255:53"], { stdin: "not a dns message" });
    const after = JSON.parse((await tp(["status", "-o", "json"])).stdout).dns.malformed;
    assert.equal(after, before + 1);
    const ok = await inNs("ws", ["dig", "+time=5", "+tries=1", "+short", FQDN]);
    assert.equal(ok.stdout.trim(), echo.serviceIp, "the next query is answered");
  });
});

Deno.test("10,000 queries from 8 concurrent clients are all answered", async () => {
  await whileConnected(async () => {
    // Each client asks 1,250 names (a mix of cluster names and the workstation's own) with dig's batch mode.
    const names = [FQDN, `_http._tcp.${FQDN} SRV`, "laptop.home.test", `iperf.default.svc.cluster.local AAAA`];
    const batch = Array.from({ length: 1250 }, (_, i) => names[i % names.length]).join("\n") + "\n";
    const file = await Deno.makeTempFile({ suffix: ".dig" });
    try {
      await Deno.writeTextFile(file, batch);
      const runs = await Promise.all(
        Array.from(
          { length: 8 },
          () => inNs("ws", ["dig", "+time=5", "+tries=2", "+noall", "+comments", "-f", file], { timeoutMs: 120_000 }),
        ),
      );
      let noerror = 0;
      for (const r of runs) noerror += (r.stdout.match(/status: NOERROR/g) ?? []).length;
      assert.equal(noerror, 10_000);
    } finally {
      await Deno.remove(file);
    }
  });
});
