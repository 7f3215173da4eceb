/**
 * A closed UDP port is reported even when the refusal comes in the middle of a batch of datagrams.
 *
 * sendmmsg() that sent some datagrams and then met the socket's pending error (the destination's ICMP port
 * unreachable for an earlier datagram) returns the count sent, and the error is gone from the socket (net/socket.c,
 * __sys_sendmmsg). If no later ICMP message comes (the destination's kernel limits them), the workstation's app
 * never learns the port is closed. Loopback answers every datagram (no rate limit there), so the refusal would come
 * again with the next datagram: the test puts the destination in a network namespace of its own behind a veth, with
 * at most one ICMP message (net.ipv4.icmp_msgs_burst=1, per namespace), as a remote host's rate limit would.
 *
 * Real parts: two network namespaces (anonymous: `unshare -n`, gone with their processes), a veth pair, the kernel's
 * UDP and ICMP, the manager's FFI sockets, and for the tunnel case the manager's HTTP/2 and tp's client.
 */
import assert from "node:assert/strict";
import { requireRootAndIproute } from "./ffi_netns.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CHILD = new URL("./udp_refused_child.ts", import.meta.url).pathname;

/** Namespace A (this script's, by unshare): a veth to namespace B (a sleeping process's), B at 198.18.0.2. */
const SETUP = `
set -e
ip link set lo up
unshare -n sleep 60 &
B=$!
trap 'kill $B' EXIT
for i in $(seq 50); do [ "$(readlink /proc/$B/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.05; done
ip link add va type veth peer name vb netns $B
ip addr add 198.18.0.1/30 dev va
ip link set va up
nsenter -t $B -n sh -c 'ip link set lo up && ip addr add 198.18.0.2/30 dev vb && ip link set vb up &&
  sysctl -qw net.ipv4.icmp_msgs_burst=1 net.ipv4.icmp_msgs_per_sec=1'
"$DENO" run -A --cached-only "$CHILD" "$@"
`;

async function inNamespaces(args: string[]): Promise<{ refused: boolean; how: string }> {
  const out = await new Deno.Command("unshare", {
    args: ["-n", "sh", "-c", SETUP, "sh", ...args],
    cwd: ROOT,
    env: { DENO: Deno.execPath(), CHILD },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const line = stdout.trim().split("\n").at(-1) ?? "";
  assert.equal(out.code, 0, `child failed:\n${stdout}\n${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(line);
}

Deno.test("UdpSocket.sendMany reports a closed port whose one ICMP message came in the middle of the batch", async () => {
  await requireRootAndIproute();
  const r = await inNamespaces(["ffi", "198.18.0.2", "32"]);
  assert.ok(r.refused, `the closed port went unreported: ${r.how}`);
});

Deno.test("a UDP tunnel is reset REFUSED when the refusal came in the middle of the manager's batch", async () => {
  await requireRootAndIproute();
  const r = await inNamespaces(["tunnel", "198.18.0.2", "32"]);
  assert.ok(r.refused, `the closed port went unreported: ${r.how}`);
});
