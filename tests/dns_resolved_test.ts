/**
 * systemd-resolved mode, without resolved: the detection, and the exact resolvectl command lines run against a test
 * double (tests/dns_fake_resolvectl) put on a PATH of the test's own, which can also be told to fail. The real
 * resolved and resolvectl are tested in tests/dns_resolved_real_test.ts.
 */
import assert from "node:assert/strict";
import { NameRouter } from "../net/dns/name_routing.ts";
import {
  applyResolved,
  detectResolved,
  RESOLVED_VARLINK,
  resolvedApplyCommands,
  resolvedUpstreams,
  revertResolved,
} from "../cli/dns/resolved.ts";
import { ROOT } from "./lab.ts";

async function withFakeResolved(
  fn: (dirs: { bin: string; runDir: string; log: string }) => void | Promise<void>,
) {
  const tmp = await Deno.makeTempDir({ prefix: "tp-resolved-" });
  try {
    await Deno.mkdir(`${tmp}/bin`);
    await Deno.copyFile(`${ROOT}/tests/dns_fake_resolvectl`, `${tmp}/bin/resolvectl`);
    await Deno.chmod(`${tmp}/bin/resolvectl`, 0o755);
    await Deno.mkdir(`${tmp}/run/systemd/resolve`, { recursive: true });
    await fn({ bin: `${tmp}/bin`, runDir: `${tmp}/run/systemd/resolve`, log: `${tmp}/bin/calls.log` });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

const router = new NameRouter({
  clusterDomain: "cluster.local",
  namespace: "default",
  namespaces: ["default", "staging"],
  subnets: ["198.19.0.0/24", "2001:db8:5::/112"],
});
const settings = {
  link: "tp0",
  dnsAddress: "198.19.255.53",
  searchDomains: router.searchDomains(),
  routingDomains: router.routingDomains(),
};

Deno.test("detectResolved() needs resolved's runtime directory and the bus or resolvectl, and says which is missing", async () => {
  await withFakeResolved(async ({ bin, runDir }) => {
    const yes = await detectResolved({ runDir, path: `/nonexistent:${bin}` });
    assert.deepEqual([yes.running, yes.resolvectl], [true, `${bin}/resolvectl`]);
    const noDir = await detectResolved({ runDir: `${runDir}/nope`, path: bin });
    assert.equal(noDir.running, false);
    assert.match(noDir.reason, /does not exist/);
    const noTool = await detectResolved({ runDir, path: "/nonexistent", busAddress: "unix:path=/nonexistent/bus" });
    assert.equal(noTool.running, false);
    assert.match(noTool.reason, /resolvectl is not on PATH/);
  });
});

Deno.test("detectResolved() does not count a resolved that has stopped: the Varlink socket it left refuses connections", async () => {
  await withFakeResolved(async ({ bin, runDir }) => {
    const varlink = `${runDir}/${RESOLVED_VARLINK}`;
    const listener = Deno.listen({ transport: "unix", path: varlink });
    const live = await detectResolved({ runDir, path: bin });
    assert.equal(live.running, true, live.reason);
    // The socket file stays after resolved exits; Deno's listener removes its own, so a second name keeps it.
    Deno.linkSync(varlink, `${varlink}.kept`);
    listener.close();
    Deno.renameSync(`${varlink}.kept`, varlink);
    assert.ok(Deno.statSync(varlink).isSocket);
    const stopped = await detectResolved({ runDir, path: bin });
    assert.equal(stopped.running, false);
    assert.match(stopped.reason, /nothing listens on .*io\.systemd\.Resolve: systemd-resolved has stopped/);
  });
});

Deno.test("detectResolved() finds no systemd-resolved on this machine", async () => {
  // The test environment has no systemd-resolved; if this fails, the machine has one and the lab tests cover it.
  assert.equal((await detectResolved()).running, false);
});

Deno.test("resolvedApplyCommands() sets tp's DNS, search and routing domains, and no default route", () => {
  assert.deepEqual(resolvedApplyCommands(settings), [
    ["resolvectl", "dns", "tp0", "198.19.255.53"],
    [
      "resolvectl",
      "domain",
      "tp0",
      "default.svc.cluster.local",
      "svc.cluster.local",
      "cluster.local",
      "~default",
      "~staging",
      "~svc",
      "~0.19.198.in-addr.arpa",
      "~0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    ],
    ["resolvectl", "default-route", "tp0", "false"],
    ["resolvectl", "dnssec", "tp0", "no"],
  ]);
});

Deno.test("applyResolved() and revertResolved() run those command lines through resolvectl", async () => {
  await withFakeResolved(async ({ bin, runDir, log }) => {
    const { resolvectl } = await detectResolved({ runDir, path: bin });
    await applyResolved(settings, resolvectl!);
    await revertResolved("tp0", resolvectl!);
    const calls = (await Deno.readTextFile(log)).trim().split("\n");
    assert.deepEqual(calls, [
      ...resolvedApplyCommands(settings).map((c) => ["resolvectl", ...c.slice(1)].join(" ")),
      "resolvectl revert tp0",
    ]);
  });
});

Deno.test("applyResolved() reverts the link when a command fails part-way, and quotes the failure", async () => {
  await withFakeResolved(async ({ bin, log }) => {
    await Deno.writeTextFile(`${bin}/fail-on`, "domain");
    await assert.rejects(
      applyResolved(settings, `${bin}/resolvectl`),
      /`.*resolvectl domain tp0 .*` failed \(exit 1\)/,
    );
    const calls = (await Deno.readTextFile(log)).trim().split("\n");
    assert.deepEqual(calls.map((c) => c.split(" ")[1]), ["dns", "domain", "revert"]);
  });
});

Deno.test("resolvedUpstreams() takes the uplink servers from resolved's own resolv.conf, not the stub", async () => {
  await withFakeResolved(async ({ runDir }) => {
    await Deno.writeTextFile(`${runDir}/resolv.conf`, "nameserver 198.18.2.53\nnameserver 127.0.0.53\nsearch x\n");
    assert.deepEqual(await resolvedUpstreams(runDir), ["198.18.2.53"]);
  });
});
