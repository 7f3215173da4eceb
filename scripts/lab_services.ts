/**
 * The lab cluster's workloads, one process run inside the cluster namespace by `scripts/lab up`:
 * - HTTP echo: `GET /` answers JSON with the request and the client address it saw; `GET /bytes/N` answers N
 *   bytes; `POST` answers the body's length and SHA-256.
 * - TCP echo: writes back every byte it reads, and half-closes when the client does.
 * - UDP echo: sends every datagram back to its sender, from the address it was sent to.
 * It listens on the wildcard addresses (IPv4 and IPv6), so every service and pod IP on the namespace's `lo` answers.
 * It writes a ready file once every socket is bound, and exits on SIGTERM.
 */
import dgram from "node:dgram";

const args = new Map<string, string>();
for (const a of Deno.args) {
  const m = /^--([a-z-]+)=(.*)$/.exec(a);
  if (!m) throw new TypeError(`lab_services: unexpected argument "${a}"`);
  args.set(m[1]!, m[2]!);
}
const httpPort = Number(args.get("http-port") ?? 8080);
const tcpPort = Number(args.get("tcp-port") ?? 7007);
const udpPort = Number(args.get("udp-port") ?? 7007);
const readyFile = args.get("ready-file");
/** The "service" its HTTP answers name (a lab pod's app, or a workstation's local stand-in, call themselves apart). */
const serviceName = args.get("name") ?? "echo";
/**
 * UDP echo addresses: one socket bound to each, so a reply leaves from the address the request was sent to (a
 * wildcard socket would answer a client outside the namespace from whichever address routing picks).
 */
const udpAddresses = (args.get("udp-addresses") ?? "::").split(",").filter(Boolean);

const abort = new AbortController();

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

function httpHandler(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response> {
  const url = new URL(req.url);
  const bytes = /^\/bytes\/(\d+)$/.exec(url.pathname);
  if (bytes) {
    const n = Math.min(Number(bytes[1]), 1 << 30);
    const chunk = new Uint8Array(Math.min(n, 65536)).fill(0x61);
    let left = n;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (left <= 0) return c.close();
        const k = Math.min(left, chunk.length);
        c.enqueue(chunk.subarray(0, k));
        left -= k;
      },
    });
    return new Response(body, { headers: { "content-length": String(n), "content-type": "application/octet-stream" } });
  }
  const describe = async () => {
    const body = req.method === "POST" || req.method === "PUT" ? new Uint8Array(await req.arrayBuffer()) : null;
    return Response.json({
      service: serviceName,
      method: req.method,
      path: url.pathname + url.search,
      host: req.headers.get("host"),
      headers: Object.fromEntries(req.headers),
      client: { address: info.remoteAddr.hostname.replace(/^::ffff:/, ""), port: info.remoteAddr.port },
      body: body ? { length: body.length, sha256: await sha256(body) } : null,
    });
  };
  return describe();
}

/**
 * Accepts until the listener closes. An accept that fails (a client that reset before it was accepted, too many files)
 * costs that one connection: the loop goes on, as a real server's does, instead of ending the lab's echo service.
 */
async function tcpEcho(listener: Deno.Listener<Deno.TcpConn>): Promise<void> {
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || abort.signal.aborted) return;
      console.error(`lab_services: accept failed (${e instanceof Error ? e.message : e}); going on`);
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    (async () => {
      const buf = new Uint8Array(256 * 1024);
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
        await conn.closeWrite();
      } catch {
        // A reset from the client ends this connection only.
      } finally {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    })();
  }
}

function udpEcho(address: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = address.includes(":")
      ? dgram.createSocket({ type: "udp6", ipv6Only: address !== "::" })
      : dgram.createSocket({ type: "udp4" });
    sock.on("error", reject);
    sock.on("message", (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.bind(udpPort, address, () => resolve(sock));
  });
}

// "::" is dual-stack here: one socket serves IPv4 (as ::ffff:a.b.c.d) and IPv6.
const server = Deno.serve({ hostname: "::", port: httpPort, signal: abort.signal, onListen() {} }, httpHandler);
const tcp = Deno.listen({ hostname: "::", port: tcpPort });
tcpEcho(tcp);
const udp = await Promise.all(udpAddresses.map(udpEcho));

if (readyFile) await Deno.writeTextFile(readyFile, `${Deno.pid}\n`);

Deno.addSignalListener("SIGTERM", async () => {
  abort.abort();
  tcp.close();
  for (const u of udp) u.close();
  await server.finished;
  Deno.exit(0);
});
