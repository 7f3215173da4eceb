/**
 * tp against the REAL systemd-resolved (Debian's, unpacked by scripts/install_deps, never installed), run on the lab's
 * workstation in a mount namespace of its own with its own system bus (tests/resolved_ns.ts): /etc/resolv.conf there
 * is a symlink to resolved's stub-resolv.conf, as on Ubuntu, so getent, dig and curl ask the 127.0.0.53 stub.
 *
 * Both ways tp configures resolved: over D-Bus (org.freedesktop.resolve1), and with resolvectl when the bus cannot be
 * reached (tp's daemon is given a bus address where nothing listens; resolvectl, on its PATH, reaches the bus). Each:
 * connect, cluster names (full, short through the search domains tp sets, `<svc>.<ns>`, reverse) through the stub,
 * other names unchanged and never sent to tp, tp's settings kept when resolved restarts, `tp quit` leaves resolved as it
 * was, and kill -9 of the daemon leaves nothing behind. The D-Bus mock (tests/dns_resolved_dbus_test.ts) and the fake
 * resolvectl (tests/dns_resolved_test.ts) remain for what only they can do: record the exact calls, inject failures.
 */
import assert from "node:assert/strict";
import { NameRouter } from "../net/dns/name_routing.ts";
import { labService, ROOT } from "./lab.ts";
import { LAB, MANAGER_URL, startLabManager } from "./connect_fixture.ts";
import { NS_STATE_DIR, type ResolvedNs, startResolvedNs, UNREACHABLE_BUS } from "./resolved_ns.ts";
import type { LinkChildOptions, LinkView } from "./resolved_link_child.ts";

const echo = labService(LAB, "echo");
const home = LAB.workstationDns;
const FQDN = `echo.default.svc.${LAB.clusterDomain}`;
/** tp's DNS address on the lab: the last address of the first service subnet (cli/daemon/dns.ts). */
const TP_DNS = "198.19.0.255";
const SEARCH = `default.svc.${LAB.clusterDomain} svc.${LAB.clusterDomain} ${LAB.clusterDomain}`;
const WAIT_MS = 10_000;

type Via = "dbus" | "resolvectl";

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The daemon's environment: for "resolvectl", a system bus address where nothing listens. */
function tpEnv(via: Via): Record<string, string> {
  return via === "dbus" ? {} : { DBUS_SYSTEM_BUS_ADDRESS: UNREACHABLE_BUS };
}

/** `dig` at resolved's stub: the rcode and the answers' data. */
async function digStub(ns: ResolvedNs, args: string[]): Promise<{ status: string; data: string[] }> {
  const r = await ns.run(["dig", "@127.0.0.53", "+time=3", "+tries=1", "+noall", "+comments", "+answer", ...args]);
  const status = r.stdout.match(/status: (\w+)/)?.[1] ?? `no answer (exit ${r.code}): ${r.stdout}${r.stderr}`;
  const data = r.stdout.split("\n").filter((l) => l.trim() && !l.startsWith(";")).map((l) => l.split(/\s+/).pop()!);
  return { status, data };
}

/** The first IPv4 address the C library finds for `name` (through /etc/resolv.conf, the stub), or null. */
async function getent(ns: ResolvedNs, name: string): Promise<string | null> {
  const r = await ns.run(["getent", "ahostsv4", name]);
  return r.code === 0 ? r.stdout.split(/\s+/)[0] ?? null : null;
}

async function resolvConf(ns: ResolvedNs): Promise<string> {
  const r = await ns.run(["cat", "/etc/resolv.conf"]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** What resolved holds for `link`, or null when it knows no such link. */
async function linkView(ns: ResolvedNs, link: string): Promise<LinkView | null> {
  const one = async (verb: string) => {
    const r = await ns.run([ns.resolvectl, verb, link]);
    return r.code === 0 ? r.stdout.replace(/^[^:]*\):/, "").trim().replace(/\s+/g, " ") : null;
  };
  const [dns, domain, defaultRoute, dnssec] = [
    await one("dns"),
    await one("domain"),
    await one("default-route"),
    await one("dnssec"),
  ];
  if (dns === null || domain === null || defaultRoute === null || dnssec === null) return null;
  return { dns, domain, defaultRoute, dnssec };
}

/** The workstation's own names resolve through resolved, as before tp. */
async function assertOtherNames(ns: ResolvedNs, when: string): Promise<void> {
  assert.equal(await getent(ns, home.hostName), home.hostIp, `getent ${home.hostName} ${when}`);
  const short = home.hostName.split(".")[0]!;
  assert.equal(await getent(ns, short), home.hostIp, `getent ${short} (search ${home.searchDomain}) ${when}`);
  assert.deepEqual(await digStub(ns, [home.hostName]), { status: "NOERROR", data: [home.hostIp] }, `dig ${when}`);
}

/** Cluster names resolve nowhere: the stub has no answer for them. */
async function assertNoClusterNames(ns: ResolvedNs, when: string): Promise<void> {
  assert.deepEqual((await digStub(ns, [FQDN])).data, [], `dig ${FQDN} ${when}`);
  assert.equal(await getent(ns, "echo"), null, `getent echo ${when}`);
}

/** The part of `tp status -o json` these tests read. */
interface DnsStatus {
  mode: string;
  resolvedVia?: string;
  address: string;
  upstreams: string[];
  /** Queries tp sent to the cluster, and to the machine's own nameservers. */
  cluster: number;
  upstream: number;
  system: { pointsAtTp: boolean; detail: string };
}

async function dnsStatus(ns: ResolvedNs, via: Via): Promise<DnsStatus> {
  const r = await ns.tp(["status", "-o", "json"], tpEnv(via));
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).dns;
}

async function daemonPid(ns: ResolvedNs): Promise<number | null> {
  try {
    return JSON.parse(await ns.readFile(`${NS_STATE_DIR}/daemon.json`)).pid;
  } catch {
    return null;
  }
}

/** Links named tpN in the namespace. */
async function tpLinks(ns: ResolvedNs): Promise<string[]> {
  const r = await ns.run(["ip", "-j", "link"]);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).filter((n) => /^tp\d+$/.test(n));
}

/** Runs `fn` with the lab's manager and the namespace with resolved; then ends tp's daemon, resolved and the rest. */
async function withResolved(via: Via, fn: (ns: ResolvedNs) => Promise<void>): Promise<void> {
  const manager = await startLabManager();
  let ns: ResolvedNs | null = null;
  try {
    ns = await startResolvedNs();
    await fn(ns);
  } finally {
    if (ns) {
      const pid = await daemonPid(ns);
      await ns.tp(["quit"], tpEnv(via));
      if (pid !== null) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await ns.stop();
    }
    await manager.stop();
  }
}

/** The whole story for one way of configuring resolved. */
async function scenario(via: Via): Promise<void> {
  await withResolved(via, async (ns) => {
    const env = tpEnv(via);
    const original = await resolvConf(ns);
    assert.match(original, /^nameserver 127\.0\.0\.53$/m, "resolv.conf is resolved's stub-resolv.conf");
    assert.match(original, new RegExp(`^search ${home.searchDomain}$`, "m"));
    await assertOtherNames(ns, "before tp connect");
    await assertNoClusterNames(ns, "before tp connect");

    // connect
    const c = await ns.tp(["connect", "--manager-url", MANAGER_URL], env);
    assert.equal(c.code, 0, `tp connect failed:\n${c.stderr}`);
    const dns = await dnsStatus(ns, via);
    assert.equal(dns.mode, "systemd-resolved");
    assert.equal(dns.resolvedVia, via);
    assert.equal(dns.address, TP_DNS);
    assert.deepEqual(dns.upstreams, [home.ip], "tp forwards other names where resolved does");
    assert.equal(dns.system.pointsAtTp, true, dns.system.detail);
    const settings = await linkView(ns, "tp0");
    assert.ok(settings, "resolved knows tp0");
    assert.equal(settings.dns, TP_DNS);
    assert.ok(settings.domain.startsWith(`${SEARCH} ~default ~svc `), settings.domain);
    assert.equal(settings.defaultRoute, "no");
    assert.equal(settings.dnssec, "no");
    assert.match(await resolvConf(ns), new RegExp(`^search ${home.searchDomain} ${SEARCH}$`, "m"));

    // cluster names through the stub
    assert.deepEqual(await digStub(ns, [FQDN, "A"]), { status: "NOERROR", data: [echo.serviceIp] });
    assert.deepEqual(await digStub(ns, [FQDN, "AAAA"]), { status: "NOERROR", data: [echo.serviceIp6] });
    assert.deepEqual(await digStub(ns, ["+search", "echo"]), { status: "NOERROR", data: [echo.serviceIp] });
    assert.deepEqual(await digStub(ns, ["-x", echo.serviceIp]), { status: "NOERROR", data: [`${FQDN}.`] });
    for (const name of [FQDN, "echo", "echo.default"]) {
      assert.equal(await getent(ns, name), echo.serviceIp, `getent ${name}`);
    }
    const http = echo.ports["http"]!.port;
    const curl = await ns.run(["curl", "-sS", "-4", "-m", "10", `http://echo.default:${http}/by-name`]);
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(JSON.parse(curl.stdout).host, `echo.default:${http}`);

    // other names: unchanged, and not through tp (its link is not a default route)
    const counted = await dnsStatus(ns, via);
    // resolved caches: each distinct question reaches tp once (A, AAAA, PTR, echo.default).
    assert.ok(counted.cluster >= 4, `tp answered the cluster names (${counted.cluster} queries)`);
    await assertOtherNames(ns, "while connected");
    assert.equal((await dnsStatus(ns, via)).upstream, counted.upstream, "resolved sent no other name to tp");

    // resolved restarts (a package upgrade): it reloads tp's link settings from /run/systemd/resolve/netif
    await ns.stopResolved();
    await ns.startResolved();
    assert.equal(await getent(ns, "echo"), echo.serviceIp, "getent echo after resolved restarted");
    assert.equal((await linkView(ns, "tp0"))?.dns, TP_DNS);

    // quit (talking to the restarted resolved)
    const q = await ns.tp(["quit"], env);
    assert.equal(q.code, 0, q.stderr);
    const log = await ns.readFile(`${NS_STATE_DIR}/daemon.log`);
    assert.match(log, new RegExp(`reverted systemd-resolved's settings for tp0 \\(through ${via}\\)`));
    assert.match(ns.resolvedLog(), /member=RevertLink/, "resolved was asked to revert the link");
    assert.deepEqual(await tpLinks(ns), []);
    assert.equal(await linkView(ns, "tp0"), null, "resolved knows no tp0");
    assert.doesNotMatch((await ns.run([ns.resolvectl, "status"])).stdout, new RegExp(TP_DNS.replaceAll(".", "\\.")));
    assert.equal(await resolvConf(ns), original, "stub-resolv.conf is as before tp connect");
    await assertOtherNames(ns, "after tp quit");
    await assertNoClusterNames(ns, "after tp quit");

    // kill -9: the kernel removes the TUN, resolved drops the link; no tp command runs
    const c2 = await ns.tp(["connect", "--manager-url", MANAGER_URL], env);
    assert.equal(c2.code, 0, `tp connect failed:\n${c2.stderr}`);
    assert.equal(await getent(ns, "echo"), echo.serviceIp);
    const pid = await daemonPid(ns);
    assert.ok(pid, "the daemon's pid");
    Deno.kill(pid, "SIGKILL");
    const killed = performance.now();
    while ((await tpLinks(ns)).length || (await resolvConf(ns)) !== original) {
      const ms = performance.now() - killed;
      assert.ok(ms < WAIT_MS, `resolved still holds tp's settings ${Math.round(ms)} ms after kill -9`);
      await sleep(20);
    }
    console.log(`${via}: resolved dropped tp's link ${Math.round(performance.now() - killed)} ms after kill -9`);
    assert.equal(await linkView(ns, "tp0"), null, "resolved knows no tp0");
    await assertOtherNames(ns, "after kill -9");
    await assertNoClusterNames(ns, "after kill -9");
    const cleanup = await ns.tp(["quit"], env);
    assert.equal(cleanup.code, 0, cleanup.stderr);

    // `tp status` reads resolved's settings as they are: another program reverting the link shows
    const c3 = await ns.tp(["connect", "--manager-url", MANAGER_URL], env);
    assert.equal(c3.code, 0, `tp connect failed:\n${c3.stderr}`);
    assert.equal((await dnsStatus(ns, via)).system.pointsAtTp, true);
    assert.equal((await ns.run([ns.resolvectl, "revert", "tp0"])).code, 0);
    const reverted = (await dnsStatus(ns, via)).system;
    assert.equal(reverted.pointsAtTp, false);
    assert.match(
      reverted.detail,
      new RegExp(`DNS servers for tp0 are none, not tp's ${TP_DNS.replaceAll(".", "\\.")}`),
    );
    assert.equal((await ns.tp(["quit"], env)).code, 0);
  });
}

Deno.test("the real systemd-resolved over D-Bus: cluster names through the 127.0.0.53 stub, others unchanged, kept across a restart of resolved, nothing left after tp quit or kill -9", async () => {
  await scenario("dbus");
});

Deno.test("the real systemd-resolved through resolvectl when the bus is unreachable for tp: the same", async () => {
  await scenario("resolvectl");
});

Deno.test("a systemd-resolved that has stopped, its runtime directory left behind, is not used: tp points resolv.conf at itself and puts it back", async () => {
  await withResolved("dbus", async (ns) => {
    // As `systemctl stop systemd-resolved` leaves it: /run/systemd/resolve and its sockets stay, nothing listens.
    await ns.stopResolved();
    const original = await resolvConf(ns);
    const c = await ns.tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, `tp connect failed:\n${c.stderr}`);
    const dns = await dnsStatus(ns, "dbus");
    assert.equal(dns.mode, "resolv.conf");
    assert.equal(dns.system.pointsAtTp, true, dns.system.detail);
    assert.match(await ns.readFile(`${NS_STATE_DIR}/daemon.log`), /systemd-resolved has stopped/);
    assert.match(await resolvConf(ns), new RegExp(`^nameserver ${TP_DNS.replaceAll(".", "\\.")}$`, "m"));
    assert.equal(await getent(ns, "echo"), echo.serviceIp);
    const q = await ns.tp(["quit"]);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(await resolvConf(ns), original, "resolv.conf (the stub file it links to) is back byte for byte");
  });
});

Deno.test("configureResolved() sets a link on the real systemd-resolved, and revert() puts it back as it was, over D-Bus and with resolvectl", async () => {
  const ns = await startResolvedNs();
  const link = "tprv0";
  try {
    // A link that stays after the revert (tp's own goes away with its daemon, which would hide a revert that fails).
    for (const cmd of [["ip", "tuntap", "add", "dev", link, "mode", "tun"], ["ip", "link", "set", link, "up"]]) {
      const r = await ns.run(cmd);
      assert.equal(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
    }
    const router = new NameRouter({
      clusterDomain: LAB.clusterDomain,
      namespace: "default",
      namespaces: ["default"],
      subnets: [...LAB.subnets.service, ...LAB.subnets.pod],
    });
    const settings = {
      link,
      dnsAddress: TP_DNS,
      searchDomains: router.searchDomains(),
      routingDomains: router.routingDomains(),
    };
    const domains = [
      ...settings.searchDomains,
      ...settings.routingDomains.filter((d) => !settings.searchDomains.includes(d)).map((d) => `~${d}`),
    ];
    // An IPv6 DNS address too: tp's, when the cluster's service subnets are IPv6 only (AF_INET6 in SetLinkDNS).
    for (const [via, dnsAddress] of [["dbus", TP_DNS], ["resolvectl", TP_DNS], ["dbus", "2001:db8:5::ffff"]] as const) {
      const o: LinkChildOptions = {
        settings: { ...settings, dnsAddress },
        busAddress: via === "dbus" ? "unix:path=/run/dbus/system_bus_socket" : UNREACHABLE_BUS,
        resolvectl: ns.resolvectl,
      };
      const r = await ns.run([Deno.execPath(), "run", "-A", `${ROOT}/tests/resolved_link_child.ts`, JSON.stringify(o)]);
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse(r.stdout) as { via: Via; before: LinkView; applied: LinkView; reverted: LinkView };
      assert.equal(got.via, via);
      const what = `${via}, ${dnsAddress}`;
      assert.deepEqual(
        got.applied,
        { dns: dnsAddress, domain: domains.join(" "), defaultRoute: "no", dnssec: "no" },
        what,
      );
      assert.deepEqual(got.reverted, got.before, `${what}: the link is as it was before`);
      assert.equal(got.reverted.dns, "", what);
    }
  } finally {
    await ns.run(["ip", "link", "del", link]);
    await ns.stop();
  }
});
