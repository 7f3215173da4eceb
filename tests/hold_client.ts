/**
 * A client that holds one TCP connection open: connects to HOST PORT, sends a line, reads its echo, then waits until
 * the connection ends or SECONDS pass. Prints JSON: the echo, how it ended ("reset": ECONNRESET, "closed": a FIN,
 * "open": still open at the deadline) and when (Date.now), for a test that cuts a link under it.
 *   deno run -A tests/hold_client.ts HOST PORT SECONDS
 */
import net from "node:net";

const [host, port, seconds] = Deno.args;
const sock = net.connect({ host: host!, port: Number(port) });
let echoed = "";
const result = await new Promise<{ how: string; error: string }>((resolve) => {
  const timer = setTimeout(() => resolve({ how: "open", error: "" }), Number(seconds) * 1000);
  sock.on("connect", () => sock.write("hello\n"));
  sock.on("data", (d) => (echoed += d.toString()));
  sock.on("error", (e: Error & { code?: string }) => {
    clearTimeout(timer);
    resolve({ how: e.code === "ECONNRESET" ? "reset" : "error", error: e.message });
  });
  sock.on("end", () => {
    clearTimeout(timer);
    resolve({ how: "closed", error: "" });
  });
});
sock.destroy();
console.log(JSON.stringify({ echoed, ...result, at: Date.now() }));
