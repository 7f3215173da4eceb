/**
 * rtnetlink through FFI against a real kernel, inside a namespace per test, with iproute2 as the observer.
 */
import assert from "node:assert/strict";
import { ip, ipJson, NetnsChild, withChild, withNetns } from "./ffi_netns.ts";
import { formatPrefix, parsePrefix } from "../net/wire/address.ts";
import type { RouteInfo } from "../ffi/netlink.ts";

type IpAddr = { ifname: string; addr_info: { local: string; prefixlen: number }[] };
type IpRoute = { dst: string; dev?: string; table?: string; type?: string };
type IpLink = { ifindex: number; ifname: string; mtu: number };

const TABLE_IDS: Record<string, number> = { default: 253, main: 254, local: 255 };

/** Sets up tp0 the way `tp connect` does: no IPv6 address generation, MTU, up, addresses, routes (one in table 100). */
async function configure(child: NetnsChild): Promise<void> {
  await child.call("createTun", { options: { name: "tp0", mtu: 1400 } });
  const steps: [string, unknown[]][] = [
    ["disableIpv6AddrGen", ["tp0"]],
    ["setLinkUp", ["tp0"]],
    ["addAddress", ["tp0", "198.18.0.1/32"]],
    ["addAddress", ["tp0", "2001:db8::1/128"]],
    ["addRoute", [{ dst: "198.18.1.0/24", dev: "tp0" }]],
    ["addRoute", [{ dst: "2001:db8:1::/64", dev: "tp0" }]],
    ["addRoute", [{ dst: "198.18.2.0/24", dev: "tp0", table: 100 }]],
    ["addRoute", [{ dst: "198.18.3.0/24", type: "throw", table: 100 }]],
  ];
  for (const [method, args] of steps) await child.call("nl", { method, args });
}

/** ip's route JSON as "family|dst/len|table|type|dev", the same shape as `routeKey`. */
function ipRouteKey(r: IpRoute, family: 4 | 6): string {
  let dst = r.dst === "default" ? (family === 4 ? "0.0.0.0/0" : "::/0") : r.dst;
  if (!dst.includes("/")) dst += family === 4 ? "/32" : "/128";
  const table = r.table === undefined ? 254 : TABLE_IDS[r.table] ?? Number(r.table);
  return `${family}|${formatPrefix(parsePrefix(dst))}|${table}|${r.type ?? "unicast"}|${r.dev ?? ""}`;
}

const routeKey = (r: RouteInfo) => `${r.family}|${r.dst}|${r.table}|${r.type}|${r.dev ?? ""}`;

async function ipRoutes(ns: string): Promise<string[]> {
  const v4 = (await ipJson(ns, "-4", "route", "show", "table", "all") as IpRoute[]).map((r) => ipRouteKey(r, 4));
  const v6 = (await ipJson(ns, "-6", "route", "show", "table", "all") as IpRoute[]).map((r) => ipRouteKey(r, 6));
  return [...new Set([...v4, ...v6])].sort();
}

Deno.test("netlink configures tp0 and iproute2 sees exactly those addresses and routes", async () => {
  await withNetns("config", async (ns) => {
    await withChild(ns, async (child) => {
      await configure(child);
      const [link] = await ipJson(ns, "link", "show", "dev", "tp0") as (IpLink & { flags: string[] })[];
      assert.equal(link?.mtu, 1400);
      assert.ok(link?.flags.includes("UP"));
      // Exactly our two addresses: no fe80:: link-local, thanks to addrgenmode none.
      const [addr] = await ipJson(ns, "addr", "show", "dev", "tp0") as IpAddr[];
      assert.deepEqual(addr?.addr_info.map((a) => `${a.local}/${a.prefixlen}`), ["198.18.0.1/32", "2001:db8::1/128"]);
      // The static routes on tp0 in main, and table 100, are exactly the ones added.
      const main4 = await ipJson(ns, "-4", "route", "show", "proto", "static") as IpRoute[];
      assert.deepEqual(main4.map((r) => `${r.dst} ${r.dev}`), ["198.18.1.0/24 tp0"]);
      const main6 = await ipJson(ns, "-6", "route", "show", "proto", "static") as IpRoute[];
      assert.deepEqual(main6.map((r) => `${r.dst} ${r.dev}`), ["2001:db8:1::/64 tp0"]);
      const t100 = await ipJson(ns, "-4", "route", "show", "table", "100") as IpRoute[];
      assert.deepEqual(t100.map((r) => `${r.type ?? "unicast"} ${r.dst} ${r.dev ?? "-"}`).sort(), [
        "throw 198.18.3.0/24 -",
        "unicast 198.18.2.0/24 tp0",
      ]);
      // And nothing the kernel did on its own reaches the device: no router solicitation, no MLD.
      assert.deepEqual(await child.call("read", { count: 1, timeoutMs: 300 }), []);
    });
  });
});

Deno.test("netlink's route dump agrees with ip -j route show table all", async () => {
  await withNetns("dumps", async (ns) => {
    await withChild(ns, async (child) => {
      await configure(child);
      // The kernel adds some routes on its own a moment after an address (IPv6 local routes once DAD ends): compare
      // once the table has settled, that is when a dump and ip agree, within 2 s.
      let routes = await child.call<RouteInfo[]>("nl", { method: "routes" });
      let ip = await ipRoutes(ns);
      for (let i = 0; i < 40 && JSON.stringify([...new Set(routes.map(routeKey))].sort()) !== JSON.stringify(ip); i++) {
        await new Promise((r) => setTimeout(r, 50));
        routes = await child.call<RouteInfo[]>("nl", { method: "routes" });
        ip = await ipRoutes(ns);
      }
      assert.deepEqual([...new Set(routes.map(routeKey))].sort(), ip);
      assert.ok(routes.some((r) => r.dst === "198.18.1.0/24" && r.dev === "tp0"), "device names resolved");
    });
  });
});

Deno.test("netlink deletes the routes it added, and a second delete is a clear error", async () => {
  await withNetns("delete", async (ns) => {
    await withChild(ns, async (child) => {
      await configure(child);
      const del = async (method: string, arg: unknown) =>
        await child.request("nl", { method, args: [...[arg].flat()] });
      assert.equal((await del("deleteRoute", { dst: "198.18.1.0/24", dev: "tp0" })).error, undefined);
      assert.equal((await del("deleteRoute", { dst: "198.18.3.0/24", type: "throw", table: 100 })).error, undefined);
      assert.deepEqual(await ipJson(ns, "-4", "route", "show", "proto", "static"), []);
      assert.deepEqual(await ipJson(ns, "-4", "route", "show", "table", "100", "type", "throw"), []);

      const again = await del("deleteRoute", { dst: "198.18.1.0/24", dev: "tp0" });
      assert.equal(again.error?.message, "No route 198.18.1.0/24 on dev tp0 (table main) to delete");
    });
  });
});

Deno.test("netlink errors say what failed: existing route, missing family, unknown device, bad CIDR", async () => {
  await withNetns("errors", async (ns) => {
    await withChild(ns, async (child) => {
      await configure(child);
      const add = async (route: unknown) => (await child.request("nl", { method: "addRoute", args: [route] })).error;
      assert.deepEqual(await add({ dst: "198.18.1.0/24", dev: "tp0" }), {
        name: "OsError",
        code: "EEXIST",
        message: "Route 198.18.1.0/24 already exists on dev tp0 (table main)",
      });
      assert.equal(
        (await child.request("nl", { method: "addAddress", args: ["tp0", "198.18.0.1/32"] })).error?.message,
        "Address 198.18.0.1/32 already exists on dev tp0",
      );
      await ip(ns, "addr", "del", "2001:db8::1/128", "dev", "tp0");
      assert.deepEqual(await add({ dst: "2001:db8:2::/64", dev: "tp0" }), {
        name: "RangeError",
        code: null,
        message: "Cannot add route 2001:db8:2::/64 on dev tp0: tp0 has no IPv6 address (add one first)",
      });
      assert.equal((await add({ dst: "198.18.5.0/24", dev: "tp9" }))?.message, 'No network interface named "tp9"');
      assert.deepEqual(await add({ dst: "10.0.0/8", dev: "tp0" }), {
        name: "SyntaxError",
        code: null,
        message: 'Cannot parse CIDR "10.0.0/8": expected an address and a prefix length, like 198.18.0.0/15 or ' +
          "2001:db8::/32",
      });
      assert.equal(
        (await add({ dst: "198.18.1.7/24", dev: "tp0" }))?.message,
        'CIDR "198.18.1.7/24" has host bits set: did you mean "198.18.1.0/24"?',
      );
    });
  });
});

Deno.test("netlink without CAP_NET_ADMIN says tp needs root or CAP_NET_ADMIN", async () => {
  await withNetns("nlperm", async (ns) => {
    const child = NetnsChild.start(ns, ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]);
    try {
      const r = await child.request("nl", { method: "addRoute", args: [{ dst: "198.18.9.0/24", dev: "lo" }] });
      assert.equal(r.error?.code, "EPERM");
      assert.equal(
        r.error?.message,
        "Cannot add route 198.18.9.0/24 on dev lo (table main): " +
          "tp needs root or CAP_NET_ADMIN to change the network configuration",
      );
    } finally {
      await child.end();
    }
  });
});
