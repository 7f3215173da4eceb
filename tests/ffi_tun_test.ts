/**
 * The Linux TUN device against a real kernel, inside a namespace per test. iproute2 observes; the device is
 * configured here with `ip` so these tests depend on ffi/tun_linux.ts alone (netlink has its own tests).
 */
import assert from "node:assert/strict";
import { fromHex, ip, ipJson, NetnsChild, toHex, udp4Packet, withChild, withNetns } from "./ffi_netns.ts";
import { createTun, validateInterfaceName } from "../ffi/tun_linux.ts";

type Link = { ifname: string; mtu: number; flags: string[]; txqlen?: number };
type Route = { dst: string; dev?: string };

const isUdpTo = (hex: string, port: number) => {
  const p = fromHex(hex);
  return p[0] === 0x45 && p[9] === 17 && ((p[22]! << 8) | p[23]!) === port;
};

async function linkNames(ns: string): Promise<string[]> {
  return (await ipJson(ns, "link", "show") as Link[]).map((l) => l.ifname);
}

Deno.test("createTun() makes tp0 with the requested MTU and queue length, non-blocking and close-on-exec", async () => {
  await withNetns("create", async (ns) => {
    await withChild(ns, async (child) => {
      const options = { mtu: 1400, txQueueLength: 2048 };
      const dev = await child.call<{ name: string; mtu: number; fd: number }>("createTun", { options });
      assert.equal(dev.name, "tp0");
      assert.equal(dev.mtu, 1400);
      const links = await ipJson(ns, "link", "show", "dev", "tp0") as Link[];
      assert.equal(links[0]?.mtu, 1400);
      assert.equal(links[0]?.txqlen, 2048);
      assert.ok(links[0]?.flags.includes("POINTOPOINT"), JSON.stringify(links));
      // /proc/PID/fdinfo shows the open flags in octal: O_NONBLOCK 04000 and O_CLOEXEC 02000000.
      const info = await Deno.readTextFile(`/proc/${child.pid}/fdinfo/${dev.fd}`);
      const flags = parseInt(/flags:\s*([0-7]+)/.exec(info)?.[1] ?? "0", 8);
      assert.ok(flags & 0o4000, `fd ${dev.fd} is not O_NONBLOCK: ${info}`);
      assert.ok(flags & 0o2000000, `fd ${dev.fd} is not O_CLOEXEC: ${info}`);
      // A second device gets the next name from the template.
      const second = NetnsChild.start(ns);
      try {
        assert.equal((await second.call<{ name: string }>("createTun")).name, "tp1");
        const tp1 = await ipJson(ns, "link", "show", "dev", "tp1") as Link[];
        assert.equal(tp1[0]?.txqlen, 500, "the TUN driver's own queue length when none is asked");
      } finally {
        await second.end();
      }
    });
  });
});

Deno.test("createTun() with an exact name that exists fails with a clear message", async () => {
  await withNetns("exists", async (ns) => {
    await withChild(ns, async (child) => {
      await child.call("createTun", { options: { name: "tpx" } });
      const second = NetnsChild.start(ns);
      try {
        const r = await second.request("createTun", { options: { name: "tpx" } });
        assert.equal(r.error?.code, "EBUSY");
        assert.match(r.error?.message ?? "", /A network interface named "tpx" already exists/);
      } finally {
        await second.end();
      }
    });
  });
});

Deno.test("UDP sent by kernel sockets to a routed address is read from the device", async () => {
  await withNetns("read", async (ns) => {
    await withChild(ns, async (child) => {
      await child.call("createTun", { options: { name: "tp0" } });
      await ip(ns, "link", "set", "tp0", "up");
      await ip(ns, "addr", "add", "198.18.0.1/32", "dev", "tp0");
      await ip(ns, "route", "add", "198.18.1.0/24", "dev", "tp0");
      const payloads = Array.from({ length: 50 }, (_, i) => toHex(new TextEncoder().encode(`hello ${i}`)));
      await child.call("udpSend", { address: "198.18.1.5", port: 9999, payloads });
      const packets = await child.call<string[]>("read", { count: 50, timeoutMs: 3000 });
      const udp = packets.filter((p) => isUdpTo(p, 9999));
      assert.equal(udp.length, 50, `read ${packets.length} packets, ${udp.length} UDP to port 9999`);
      for (const [i, hex] of udp.entries()) {
        const p = fromHex(hex);
        assert.deepEqual([...p.subarray(12, 20)], [198, 18, 0, 1, 198, 18, 1, 5]);
        assert.equal(new TextDecoder().decode(p.subarray(28)), `hello ${i}`);
      }
      const stats = await child.call<{ readPackets: number }>("stats");
      assert.ok(stats.readPackets >= 50);
    });
  });
});

Deno.test("packets written to the device reach kernel sockets", async () => {
  await withNetns("write", async (ns) => {
    await withChild(ns, async (child) => {
      await child.call("createTun", { options: { name: "tp0" } });
      await ip(ns, "link", "set", "tp0", "up");
      await ip(ns, "addr", "add", "198.18.0.1/32", "dev", "tp0");
      await ip(ns, "route", "add", "198.18.1.0/24", "dev", "tp0");
      await child.call("udpBind", { address: "198.18.0.1", port: 7777 });
      const packets = Array.from(
        { length: 20 },
        (_, i) => toHex(udp4Packet("198.18.1.5", "198.18.0.1", 5353, 7777, new TextEncoder().encode(`reply ${i}`))),
      );
      assert.equal(await child.call("write", { packets }), 20);
      const got = await child.call<{ data: string; from: string }[]>("udpReceived", { port: 7777, count: 20 });
      assert.equal(got.length, 20);
      assert.equal(new TextDecoder().decode(fromHex(got[19]!.data)), "reply 19");
      assert.equal(got[0]!.from, "198.18.1.5");
      // A malformed packet is a counted drop, not an exception.
      // (IP version 0: tun_get_user() answers EINVAL.)
      assert.equal(await child.call("write", { packets: ["0000000000000000000000000000000000000000"] }), 0);
      assert.equal((await child.call<{ writeDrops: number }>("stats")).writeDrops, 1);
    });
  });
});

Deno.test("close() removes the link and its routes, and a pending read() resolves to []", async () => {
  await withNetns("close", async (ns) => {
    await withChild(ns, async (child) => {
      await child.call("createTun", { options: { name: "tp0" } });
      // No link-local address, so no router solicitation can end the pending read.
      await ip(ns, "link", "set", "tp0", "addrgenmode", "none");
      await ip(ns, "link", "set", "tp0", "up");
      await ip(ns, "route", "add", "198.18.1.0/24", "dev", "tp0");
      // Leave a read pending (nothing is sent), then close under it.
      assert.deepEqual(await child.call("read", { count: 1, timeoutMs: 50 }), []);
      const closed = await child.call<{ pendingReadResult: number }>("close");
      assert.equal(closed.pendingReadResult, 0);
      assert.ok(!(await linkNames(ns)).includes("tp0"));
      const routes = await ipJson(ns, "route", "show", "table", "all") as Route[];
      assert.ok(!routes.some((r) => r.dev === "tp0"), JSON.stringify(routes));
    });
  });
});

Deno.test("SIGKILL of the process holding the device leaves no link and no route", async () => {
  await withNetns("kill", async (ns) => {
    const child = NetnsChild.start(ns);
    try {
      await child.call("createTun", { options: { name: "tp0" } });
      await ip(ns, "link", "set", "tp0", "up");
      await ip(ns, "route", "add", "198.18.1.0/24", "dev", "tp0");
      assert.equal(await child.call("pid"), child.pid);
      child.kill("SIGKILL");
      const status = await child.waitExit();
      assert.equal(status.signal, "SIGKILL");
    } finally {
      await child.waitExit();
    }
    assert.deepEqual(await linkNames(ns), ["lo"]);
    const routes = await ipJson(ns, "route", "show", "table", "all") as Route[];
    assert.ok(!routes.some((r) => r.dev === "tp0"), JSON.stringify(routes));
  });
});

Deno.test("createTun() without CAP_NET_ADMIN says tp needs root or CAP_NET_ADMIN", async () => {
  await withNetns("noperm", async (ns) => {
    // setpriv clears the bounding set, so even uid 0 gets no capabilities across exec.
    const child = NetnsChild.start(ns, ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]);
    try {
      const r = await child.request("createTun", { options: { name: "tp0" } });
      assert.equal(r.error?.name, "OsError");
      assert.equal(r.error?.message, "tp needs root or CAP_NET_ADMIN to create its network interface");
      assert.equal(r.error?.code, "EPERM");
    } finally {
      await child.end();
    }
    assert.deepEqual(await linkNames(ns), ["lo"]);
  });
});

Deno.test("createTun() rejects overlong and invalid names before any system call", () => {
  assert.throws(() => createTun({ name: "tp-much-too-long0" }), {
    name: "RangeError",
    message: 'Interface name "tp-much-too-long0" is too long: 17 bytes, at most 15',
  });
  assert.throws(() => validateInterfaceName("tp/0"), /must not be "." or ".." or contain "\/"/);
  assert.throws(() => validateInterfaceName("tp%s"), /use at most one "%d"/);
  assert.throws(() => validateInterfaceName(""), /empty/);
  assert.throws(() => createTun({ mtu: 20 }), /MTU 20 is out of range/);
});

/** Sends 4 MiB over kernel TCP through a reflector on the device; returns what the child saw. */
async function tcpThrough(ns: string, options: Record<string, unknown>) {
  let result: {
    received: number;
    corrupt: number;
    largest: number;
    stats: { readDrops: number; writeDrops: number };
  };
  await withChild(ns, async (child) => {
    await child.call("createTun", { options: { name: "tp0", ...options } });
    await ip(ns, "link", "set", "tp0", "addrgenmode", "none");
    await ip(ns, "link", "set", "tp0", "up");
    await ip(ns, "addr", "add", "198.18.0.1/32", "dev", "tp0");
    await ip(ns, "route", "add", "198.18.1.0/24", "dev", "tp0");
    result = await child.call("tcpThroughReflector", { port: 5001, bytes: 4 << 20 }, 30_000);
  });
  return result!;
}

Deno.test("TCP through the device arrives intact in MTU-sized packets", async () => {
  await withNetns("tcp", async (ns) => {
    const r = await tcpThrough(ns, {});
    assert.deepEqual([r.received, r.corrupt], [4 << 20, 0]);
    assert.ok(r.largest <= 1500, `largest packet ${r.largest}`);
  });
});

Deno.test("with MTU 65535 (as the daemon's device), TCP through the device arrives intact in packets over 1500 bytes", async () => {
  await withNetns("tcp64k", async (ns) => {
    const r = await tcpThrough(ns, { mtu: 65535 });
    assert.deepEqual([r.received, r.corrupt, r.stats.readDrops, r.stats.writeDrops], [4 << 20, 0, 0, 0]);
    assert.ok(r.largest > 1500, `largest packet ${r.largest}`);
  });
});
