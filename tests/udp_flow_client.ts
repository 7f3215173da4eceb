/**
 * One UDP flow for the resume tests (tests/resume_lab_test.ts), run in the lab's workstation namespace: from one
 * connected socket (one source port), a datagram to HOST:PORT every 50 ms for SECONDS, counting the echoes and any
 * error the socket reports (an ICMP unreachable would be one). Prints one JSON line, with the wall-clock time (Date.now)
 * of the last echo.
 *
 * Usage: deno run -A tests/udp_flow_client.ts HOST PORT SECONDS
 */
import dgram from "node:dgram";

const [host, port, seconds] = Deno.args;
const sock = dgram.createSocket(host!.includes(":") ? "udp6" : "udp4");
const errors: string[] = [];
let sent = 0, replies = 0, lastReplyAt = 0;
sock.on("message", () => {
  replies++;
  lastReplyAt = Date.now();
});
sock.on("error", (e: Error) => errors.push(e.message));
await new Promise<void>((r) => sock.connect(Number(port), host, () => r()));
const end = performance.now() + Number(seconds) * 1000;
while (performance.now() < end) {
  sock.send(new TextEncoder().encode(`datagram ${sent++}`));
  await new Promise((r) => setTimeout(r, 50));
}
await new Promise((r) => setTimeout(r, 300));
sock.close();
console.log(JSON.stringify({ sent, replies, errors, lastReplyAt }));
