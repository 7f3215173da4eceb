/**
 * systemd-resolved over D-Bus, against real parts: a private dbus-daemon (its own configuration in a temp dir; never
 * the system bus) and python3-dbusmock standing in for org.freedesktop.resolve1, recording every call made to it.
 * The fallback to resolvectl uses the test double of tests/dns_resolved_test.ts. Every process is ended by its pid.
 * The mock checks what the real resolved cannot show: the exact calls and signatures, and failures injected part-way;
 * tests/dns_resolved_real_test.ts runs tp against the real daemon.
 */
import assert from "node:assert/strict";
import { NameRouter } from "../net/dns/name_routing.ts";
import { DBusConnection, DBusVariant } from "../cli/dns/dbus.ts";
import { configureResolved, detectResolved, resolvedApplyCommands } from "../cli/dns/resolved.ts";
import {
  applyResolvedDbus,
  type LinkDnsSettings,
  linkIndex,
  resolvedDbusApplyCalls,
  revertResolvedDbus,
} from "../cli/dns/resolved_dbus.ts";
import { ROOT } from "./lab.ts";

const DBUS_DAEMON = "/usr/bin/dbus-daemon";
/** Debian's python, which has the dbusmock module (a pyenv shim may shadow python3 on PATH). */
const PYTHON = "/usr/bin/python3";
const WAIT_MS = 10_000;

const MANAGER = "org.freedesktop.resolve1.Manager";
const RESOLVE1 = { destination: "org.freedesktop.resolve1", path: "/org/freedesktop/resolve1" };
/** The Manager methods tp calls, with their signatures (org.freedesktop.resolve1(5)). */
const METHODS: Record<string, string> = {
  SetLinkDNS: "ia(iay)",
  SetLinkDomains: "ia(sb)",
  SetLinkDefaultRoute: "ib",
  SetLinkDNSSEC: "is",
  RevertLink: "i",
};

const router = new NameRouter({
  clusterDomain: "cluster.local",
  namespace: "default",
  namespaces: ["default", "staging"],
  subnets: ["198.19.0.0/24", "2001:db8:5::/112"],
});
const settings: LinkDnsSettings = {
  link: "tp0",
  dnsAddress: "198.19.0.255",
  searchDomains: router.searchDomains(),
  routingDomains: router.routingDomains(),
};
/** What SetLinkDomains gets for `settings`: search domains, then routing-only ones. */
const DOMAINS = [
  ["default.svc.cluster.local", false],
  ["svc.cluster.local", false],
  ["cluster.local", false],
  ["default", true],
  ["staging", true],
  ["svc", true],
  ["0.19.198.in-addr.arpa", true],
  ["0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", true],
];

let toolsChecked = false;

/** Fails naming the Debian package of a missing tool; nothing is skipped. */
async function requireTools(): Promise<void> {
  if (toolsChecked) return;
  const missing: string[] = [];
  const packages: string[] = [];
  try {
    Deno.statSync(DBUS_DAEMON);
  } catch {
    missing.push(`${DBUS_DAEMON} (Debian package dbus-daemon)`);
    packages.push("dbus-daemon");
  }
  let py: Deno.CommandOutput | null = null;
  try {
    py = await new Deno.Command(PYTHON, { args: ["-c", "import dbusmock"], stdout: "null", stderr: "null" }).output();
  } catch { /* no python at all */ }
  if (!py?.success) {
    missing.push(`${PYTHON} with the dbusmock module (Debian package python3-dbusmock)`);
    packages.push("python3-dbusmock");
  }
  if (missing.length) {
    throw new Error(`This test needs ${missing.join(" and ")}: apt-get install ${packages.join(" ")}`);
  }
  toolsChecked = true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A child process whose output is collected; `stop()` ends it by its pid, SIGKILL if SIGTERM is not enough. */
class Proc {
  out = "";
  err = "";
  exited: Deno.CommandStatus | null = null;
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<unknown>;

  constructor(readonly name: string, cmd: string, args: string[], env: Record<string, string> = {}) {
    this.#child = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) add(chunk);
    };
    this.#reading = Promise.all([
      collect(this.#child.stdout, (s) => (this.out += s)),
      collect(this.#child.stderr, (s) => (this.err += s)),
      this.#child.status.then((s) => (this.exited = s)),
    ]);
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Polls `ready` until it is true, failing after WAIT_MS or when the process exits first. */
  async waitFor(what: string, ready: () => boolean | Promise<boolean>): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      if (await ready()) return;
      if (this.exited) throw new Error(`${this.name} exited (${this.exited.code}) before ${what}: ${this.err}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not get to ${what} in ${WAIT_MS} ms: ${this.err}`);
      await sleep(20);
    }
  }

  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    if (!this.exited) {
      try {
        Deno.kill(this.pid, signal);
      } catch { /* it has just exited */ }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!ended) {
      Deno.kill(this.pid, "SIGKILL");
      await this.#child.status;
    }
    await this.#reading;
  }
}

/** A private dbus-daemon listening on `<dir>/<name>`, allowing EXTERNAL (or only `auth`) authentication. */
async function startBus(dir: string, name = "bus", auth = "EXTERNAL"): Promise<{ proc: Proc; address: string }> {
  const config = `${dir}/${name}.conf`;
  await Deno.writeTextFile(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${dir}/${name}</listen>
  <auth>${auth}</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
  );
  const proc = new Proc("dbus-daemon", DBUS_DAEMON, [`--config-file=${config}`, "--nofork", "--print-address"]);
  await proc.waitFor("printing its address", () => proc.out.includes("\n"));
  return { proc, address: proc.out.trim() };
}

interface MockResolved {
  address: string;
  conn: DBusConnection;
  /** Adds a Manager method; `code` is python run for each call (dbusmock's AddMethod). */
  addMethod(member: string, code?: string): Promise<void>;
  /** The calls the mock got, oldest first: member, and the arguments as the variants dbusmock keeps. */
  calls(): Promise<{ member: string; args: DBusVariant[] }[]>;
  tmp: string;
}

/** A private bus with dbusmock on it as org.freedesktop.resolve1; everything is ended and removed afterwards. */
async function withMockResolved(fn: (m: MockResolved) => Promise<void>): Promise<void> {
  await requireTools();
  const tmp = await Deno.makeTempDir({ prefix: "tp-resolved-dbus-" });
  const procs: Proc[] = [];
  let conn: DBusConnection | null = null;
  try {
    const bus = await startBus(tmp);
    procs.push(bus.proc);
    const mock = new Proc(
      "dbusmock",
      PYTHON,
      ["-m", "dbusmock", "--session", RESOLVE1.destination, RESOLVE1.path, MANAGER],
      { DBUS_SESSION_BUS_ADDRESS: bus.address },
    );
    procs.push(mock);
    const c = conn = await DBusConnection.connect(bus.address);
    const dbus = {
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
    };
    await mock.waitFor("owning org.freedesktop.resolve1", async () => {
      const [owned] = await c.call({ ...dbus, member: "NameHasOwner", signature: "s", body: [RESOLVE1.destination] });
      return owned === true;
    });
    const mockCall = (member: string, signature = "", body: unknown[] = []) =>
      c.call({ ...RESOLVE1, interface: "org.freedesktop.DBus.Mock", member, signature, body });
    await fn({
      address: bus.address,
      conn: c,
      tmp,
      addMethod: async (member, code = "") => {
        await mockCall("AddMethod", "sssss", [MANAGER, member, METHODS[member]!, "", code]);
      },
      calls: async () => {
        const [calls] = await mockCall("GetCalls");
        return (calls as [bigint, string, DBusVariant[]][]).map(([, member, args]) => ({ member, args }));
      },
    });
  } finally {
    if (conn) {
      conn.close();
      await conn.done;
    }
    for (const p of procs.reverse()) await p.stop();
    await Deno.remove(tmp, { recursive: true });
  }
}

async function addAll(m: MockResolved): Promise<void> {
  for (const member of Object.keys(METHODS)) await m.addMethod(member);
}

/** Calls as [member, [signature, value] per argument], for deepEqual. */
function plain(calls: { member: string; args: DBusVariant[] }[]): [string, [string, unknown][]][] {
  return calls.map((c) => [c.member, c.args.map((a) => [a.signature, a.value])]);
}

function applyCalls(ifindex: number, family: number, address: number[]): [string, [string, unknown][]][] {
  return [
    ["SetLinkDNS", [["i", ifindex], ["a(iay)", [[family, new Uint8Array(address)]]]]],
    ["SetLinkDomains", [["i", ifindex], ["a(sb)", DOMAINS]]],
    ["SetLinkDefaultRoute", [["i", ifindex], ["b", false]]],
    ["SetLinkDNSSEC", [["i", ifindex], ["s", "no"]]],
  ];
}

Deno.test("resolvedDbusApplyCalls() gives the link the same domains, in the same order, as resolvectl", () => {
  const [, domains] = resolvedDbusApplyCalls({ ...settings, ifindex: 7 });
  const asResolvectl = (domains!.body[1] as [string, boolean][]).map(([d, routing]) => routing ? `~${d}` : d);
  assert.deepEqual(["resolvectl", "domain", "tp0", ...asResolvectl], resolvedApplyCommands(settings)[1]);
  assert.deepEqual(domains!.body[1], DOMAINS);
});

Deno.test("applyResolvedDbus() sets DNS, domains, default route, DNSSEC; revertResolvedDbus() reverts", async () => {
  await withMockResolved(async (m) => {
    await addAll(m);
    await applyResolvedDbus({ ...settings, ifindex: 7 }, m.conn);
    await revertResolvedDbus(7, m.conn);
    // AF_INET6 (10) and 16 bytes for an IPv6 DNS address.
    await applyResolvedDbus({ ...settings, dnsAddress: "2001:db8:5::ffff", ifindex: 8 }, m.conn);
    const v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    assert.deepEqual(plain(await m.calls()), [
      ...applyCalls(7, 2, [198, 19, 0, 255]),
      ["RevertLink", [["i", 7]]],
      ...applyCalls(8, 10, v6),
    ]);
  });
});

Deno.test("applyResolvedDbus() names the call resolved failed and its D-Bus error, and reverts the link", async () => {
  await withMockResolved(async (m) => {
    await addAll(m);
    await m.addMethod(
      "SetLinkDomains",
      'raise dbus.exceptions.DBusException("boom", name="org.freedesktop.resolve1.LinkBusy")',
    );
    await assert.rejects(
      applyResolvedDbus({ ...settings, ifindex: 7 }, m.conn),
      (e: Error) => {
        assert.equal(
          e.message,
          "systemd-resolved: D-Bus call SetLinkDomains on link 7 failed: org.freedesktop.resolve1.LinkBusy: boom",
        );
        return true;
      },
    );
    assert.deepEqual((await m.calls()).map((c) => c.member), ["SetLinkDNS", "SetLinkDomains", "RevertLink"]);
    assert.deepEqual(plain(await m.calls()).at(-1), ["RevertLink", [["i", 7]]]);
  });
});

Deno.test("configureResolved() goes over the bus when it is reachable, says so, and reverts the same way", async () => {
  await withMockResolved(async (m) => {
    await addAll(m);
    await Deno.mkdir(`${m.tmp}/bin`);
    await Deno.copyFile(`${ROOT}/tests/dns_fake_resolvectl`, `${m.tmp}/bin/resolvectl`);
    await Deno.chmod(`${m.tmp}/bin/resolvectl`, 0o755);
    // The loopback interface: one that exists here, index 1.
    const lo = await linkIndex("lo");
    const link = await configureResolved(
      { ...settings, link: "lo" },
      { busAddress: m.address, resolvectl: `${m.tmp}/bin/resolvectl` },
    );
    assert.deepEqual([link.via, link.note], ["dbus", ""]);
    await link.revert();
    assert.deepEqual(plain(await m.calls()), [...applyCalls(lo, 2, [198, 19, 0, 255]), ["RevertLink", [["i", lo]]]]);
    await assert.rejects(Deno.stat(`${m.tmp}/bin/calls.log`), Deno.errors.NotFound, "resolvectl was not run");
    await assert.rejects(
      configureResolved({ ...settings, link: "tp-no-such-link" }, { busAddress: m.address }),
      /Cannot find the index of network interface "tp-no-such-link"/,
    );
  });
});

Deno.test("configureResolved() uses resolvectl when the bus has no socket, refuses, or rejects auth", async () => {
  await requireTools();
  const tmp = await Deno.makeTempDir({ prefix: "tp-resolved-dbus-" });
  const procs: Proc[] = [];
  try {
    await Deno.mkdir(`${tmp}/bin`);
    await Deno.copyFile(`${ROOT}/tests/dns_fake_resolvectl`, `${tmp}/bin/resolvectl`);
    await Deno.chmod(`${tmp}/bin/resolvectl`, 0o755);
    const resolvectl = `${tmp}/bin/resolvectl`;

    // A bus that died: SIGKILL leaves its socket behind, and connecting to it is refused.
    const dead = await startBus(tmp, "dead");
    procs.push(dead.proc);
    await dead.proc.stop("SIGKILL");
    assert.ok(Deno.statSync(`${tmp}/dead`).isSocket);
    // A bus that takes ANONYMOUS only, and so rejects EXTERNAL.
    const anonymous = await startBus(tmp, "anonymous", "ANONYMOUS");
    procs.push(anonymous.proc);

    const cases = [
      { busAddress: `unix:path=${tmp}/none`, why: /No such file or directory/ },
      { busAddress: dead.address, why: /Connection refused/ },
      { busAddress: anonymous.address, why: /rejected EXTERNAL authentication as uid \d+ \(it offers: ANONYMOUS\)/ },
    ];
    for (const { busAddress, why } of cases) {
      await Deno.remove(`${tmp}/bin/calls.log`).catch(() => {});
      const link = await configureResolved(settings, { busAddress, resolvectl, timeoutMs: 2000 });
      assert.equal(link.via, "resolvectl", busAddress);
      assert.match(link.note, why);
      await link.revert();
      const calls = (await Deno.readTextFile(`${tmp}/bin/calls.log`)).trim().split("\n");
      assert.deepEqual(calls, [
        ...resolvedApplyCommands(settings).map((c) => ["resolvectl", ...c.slice(1)].join(" ")),
        "resolvectl revert tp0",
      ]);
    }
    await assert.rejects(
      configureResolved(settings, { busAddress: `unix:path=${tmp}/none` }),
      /systemd-resolved: Cannot connect to D-Bus at .*\/none: .*, and resolvectl is not on PATH/,
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("detectResolved() counts the system bus's socket as a way to configure resolved", async () => {
  await requireTools();
  const tmp = await Deno.makeTempDir({ prefix: "tp-resolved-dbus-" });
  let bus: Proc | null = null;
  try {
    const runDir = `${tmp}/run/systemd/resolve`;
    await Deno.mkdir(runDir, { recursive: true });
    const started = await startBus(tmp);
    bus = started.proc;
    const d = await detectResolved({ runDir, path: "/nonexistent", busAddress: started.address });
    assert.deepEqual([d.running, d.busSocket, d.resolvectl], [true, `${tmp}/bus`, null]);
    assert.match(d.reason, /system bus socket/);
    const none = await detectResolved({ runDir, path: "/nonexistent", busAddress: `unix:path=${tmp}/none` });
    assert.deepEqual([none.running, none.busSocket], [false, null]);
    assert.match(none.reason, /does not, and resolvectl is not on PATH/);
  } finally {
    await bus?.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});
