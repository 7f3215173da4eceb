import assert from "node:assert/strict";
import { requireRootAndIproute, run } from "../tests/ffi_netns.ts";

const CHILD = new URL("../tests/icmp_socket_child.ts", import.meta.url).pathname;

/** Pings from a fresh network namespace (lo up; ping_group_range as given, or the kernel's default "1 0"). */
async function pingFrom(pingGroupRange: string | null, addresses: string[]): Promise<Record<string, unknown>[]> {
  await requireRootAndIproute();
  const ns = `tpt-icmp-${Deno.pid}`;
  assert.equal((await run(["ip", "netns", "add", ns])).code, 0);
  try {
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    await run(["ip", "-n", ns, "route", "add", "unreachable", "198.18.77.0/24"]);
    if (pingGroupRange !== null) {
      const s = await run(["ip", "netns", "exec", ns, "sysctl", "-qw", `net.ipv4.ping_group_range=${pingGroupRange}`]);
      assert.equal(s.code, 0, s.stderr);
    }
    const r = await run([
      "ip",
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "-A",
      "--cached-only",
      CHILD,
      ...addresses,
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
}

Deno.test("IcmpPinger gets each echo's own data back from 127.0.0.1 and ::1, and null where no route leads", async () => {
  const out = await pingFrom("0 2147483647", ["127.0.0.1", "::1", "198.18.77.1"]);
  assert.deepEqual(out, [
    { dst: "127.0.0.1", reply: "tp-ping-127.0.0.1" },
    { dst: "::1", reply: "tp-ping-::1" },
    { dst: "198.18.77.1", reply: null },
  ]);
});

Deno.test("IcmpPinger says which sysctl to set where the kernel refuses ICMP sockets to the process's group", async () => {
  const [v4, v6] = await pingFrom(null, ["127.0.0.1", "::1"]);
  for (const r of [v4, v6]) {
    const e = r!.error as { code: string; message: string };
    assert.equal(e.code, "EACCES");
    assert.match(e.message, /gid 0\) is outside net\.ipv4\.ping_group_range \("1 0"\); allow it with sysctl/);
  }
});
