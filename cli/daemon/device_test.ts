import assert from "node:assert/strict";
import type { RouteInfo, RouteSpec } from "../../ffi/netlink.ts";
import { parseCidr } from "../../net/cidr.ts";
import { DeviceRoutes, type RouteTable } from "./device.ts";

/**
 * Test double of the kernel's route table (rtnetlink needs root and a device): it keeps the routes added, and refuses
 * to add or delete the destinations it is told to, as the kernel refuses a route it cannot take.
 */
class FakeRoutes implements RouteTable {
  readonly table = new Set<string>();
  readonly refuse = new Set<string>();
  addRoute(r: RouteSpec): void {
    if (this.refuse.has(r.dst)) throw new Error(`RTM_NEWROUTE ${r.dst}: Invalid argument`);
    this.table.add(r.dst);
  }
  deleteRoute(r: RouteSpec): void {
    if (this.refuse.has(r.dst)) throw new Error(`RTM_DELROUTE ${r.dst}: Invalid argument`);
    this.table.delete(r.dst);
  }
  routes(): RouteInfo[] {
    return [];
  }
}

const cidrs = (...t: string[]) => t.map((x) => parseCidr(x));

Deno.test("DeviceRoutes lists what the device has: a route the kernel refused is left out and tried at the next change", () => {
  const nl = new FakeRoutes();
  const lines: string[] = [];
  const routes = new DeviceRoutes(nl, "tp0", cidrs("198.19.0.0/24"), {
    allowConflicting: [],
    log: (l) => lines.push(l),
  });
  assert.deepEqual(routes.list, ["198.19.0.0/24"]);

  nl.refuse.add("198.19.128.0/20");
  assert.equal(routes.update(cidrs("198.19.0.0/24", "198.19.128.0/20", "198.19.64.0/24")), true);
  assert.deepEqual(routes.list, ["198.19.0.0/24", "198.19.64.0/24"], "the refused route is not claimed");
  assert.deepEqual([...nl.table].sort(), ["198.19.0.0/24", "198.19.64.0/24"]);
  assert.ok(lines.some((l) => l.includes("cannot route 198.19.128.0/20")), lines.join("\n"));

  nl.refuse.clear();
  assert.equal(routes.update(cidrs("198.19.0.0/24", "198.19.128.0/20", "198.19.64.0/24")), true, "tried again");
  assert.deepEqual(routes.list, ["198.19.0.0/24", "198.19.128.0/20", "198.19.64.0/24"]);
  assert.equal(routes.update(cidrs("198.19.0.0/24", "198.19.128.0/20", "198.19.64.0/24")), false, "nothing left to do");
});

Deno.test("DeviceRoutes keeps listing a route the kernel would not remove: the device still has it", () => {
  const nl = new FakeRoutes();
  const routes = new DeviceRoutes(nl, "tp0", cidrs("198.19.0.0/24", "198.19.64.0/24"), {
    allowConflicting: [],
    log: () => {},
  });
  nl.refuse.add("198.19.64.0/24");
  routes.update(cidrs("198.19.0.0/24"));
  assert.deepEqual(routes.list, ["198.19.0.0/24", "198.19.64.0/24"]);
  assert.ok(nl.table.has("198.19.64.0/24"));
});
