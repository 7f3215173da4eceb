/**
 * A client that arrives, opens a tunnel, says "ready" and then waits to be killed (at most 30 s), for the session
 * expiry tests. Args: manager URL, destination ip, destination port.
 */
import { connect } from "../proto/mod.ts";

const [url, ip, port] = Deno.args;
const session = await connect(url!, undefined, { clientName: "vanishing" });
const t = await session.openTunnel({
  protocol: "tcp",
  source: { ip: "10.0.0.9", port: 9 },
  destination: { ip: ip!, port: Number(port) },
});
console.log(`ready ${session.id} ${t.dial.code}`);
await new Promise((r) => setTimeout(r, 30_000));
await session.depart();
