import assert from "node:assert/strict";
import http2 from "node:http2";
import { Connection, type Stream } from "./connection.ts";
import { ConnTransport } from "./transport.ts";
import { concat } from "../../base/bytes.ts";
import { assertSameBytes, echo, KiB, MiB, pattern, Recorder, request, td, te, within } from "./_connection_fixture.ts";

// ------------------------------------------------------------------------------------------------ interop

/** A node:http2 h2c server on 127.0.0.1 and an ephemeral port. */
async function nodeServer(onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void) {
  const server = http2.createServer();
  server.on("stream", onStream);
  await within(new Promise<void>((r) => server.listen(0, "127.0.0.1", r)), 2000, "node:http2 to listen");
  const address = server.address();
  assert.ok(address && typeof address === "object");
  return { server, port: address.port };
}

/** Our server: a Connection per accepted Deno connection; `stop()` closes the listener and every connection. */
function ourServer(onStream: (s: Stream) => void) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Connection[] = [];
  const runs: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const t = new ConnTransport(conn);
        const c = new Connection("server", t, { onStream });
        connections.push(c);
        runs.push(t.run(c));
      }
    } catch {
      // the listener was closed
    }
  })();
  return {
    port: listener.addr.port,
    connections,
    async stop() {
      listener.close();
      await within(accepting, 2000, "the accept loop to end");
      for (const c of connections) c.close();
      await within(Promise.all(connections.map((c) => c.closed)), 5000, "our server's connections to close");
      await within(Promise.all(runs), 5000, "our server's transports to end");
    },
  };
}

Deno.test("our client gets a 1 MiB POST echoed by node:http2's server, and node's trailers in onTrailers", async () => {
  const { server, port } = await nodeServer((stream, headers) => {
    stream.respond({ ":status": 200, "x-path": String(headers[":path"]) }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "x-node-trailer": "yes" }));
    stream.pipe(stream); // echo, then end (which asks for the trailers)
  });
  const transport = new ConnTransport(Deno.connect({ hostname: "127.0.0.1", port }));
  const client = new Connection("client", transport);
  const running = transport.run(client);
  try {
    const body = pattern(MiB, 11);
    const s = client.request(request("/echo"));
    const r = new Recorder(s);
    for (let off = 0; off < body.length; off += 64 * KiB) s.write(body.slice(off, off + 64 * KiB));
    s.end();
    assert.equal(await within(r.closed, 10_000, "node's echo"), 0);
    assert.equal(r.headers?.find(([n]) => n === ":status")?.[1], "200");
    assert.equal(r.headers?.find(([n]) => n === "x-path")?.[1], "/echo");
    assertSameBytes(r.body(), body, "echoed body");
    assert.deepEqual(r.trailers, [["x-node-trailer", "yes"]]);
    assert.deepEqual(r.events, ["response", "data", "trailers", "end", "close 0"]);
    assert.ok((await within(client.ping(), 2000, "node's PING ACK")) >= 0);
  } finally {
    client.close();
    await within(client.closed, 2000, "our client to close");
    await within(running, 2000, "our client's transport to end");
    await within(new Promise<void>((r) => server.close(() => r())), 5000, "node:http2's server to close");
  }
});

Deno.test("node:http2's client gets 50 concurrent requests with bodies answered by our server", async () => {
  const ours = ourServer((s) => {
    const chunks: Uint8Array[] = [];
    s.onData = (c) => chunks.push(c);
    s.onEnd = () => {
      const path = s.headers!.find(([n]) => n === ":path")![1];
      s.respond([[":status", "200"], ["x-path", path]]);
      s.write(te.encode(`${path}:`));
      s.write(concat(chunks));
      s.end();
    };
  });
  const session = http2.connect(`http://127.0.0.1:${ours.port}`);
  try {
    await within(new Promise<void>((r, j) => session.once("connect", () => r()).once("error", j)), 2000, "connect");
    const one = (i: number) =>
      new Promise<{ status: number; path: string; body: Uint8Array; sent: Uint8Array }>((resolve, reject) => {
        const sent = pattern(1000 + 997 * i, i + 1);
        const req = session.request({ ":method": "POST", ":path": `/r${i}` });
        const chunks: Uint8Array[] = [];
        let status = 0;
        let path = "";
        req.on("response", (h) => {
          status = Number(h[":status"]);
          path = String(h["x-path"]);
        });
        req.on("data", (c: Uint8Array) => chunks.push(c));
        req.on("end", () => resolve({ status, path, body: concat(chunks), sent }));
        req.on("error", reject);
        req.end(sent);
      });
    const results = await within(Promise.all(Array.from({ length: 50 }, (_, i) => one(i))), 10_000, "50 responses");
    results.forEach((r, i) => {
      assert.equal(r.status, 200, `request ${i}`);
      assert.equal(r.path, `/r${i}`);
      assertSameBytes(r.body, concat([te.encode(`/r${i}:`), r.sent]), `response ${i}`);
    });
    assert.equal(ours.connections.length, 1, "one connection carried them all");
  } finally {
    await within(new Promise<void>((r) => session.close(() => r())), 5000, "node's session to close");
    await ours.stop();
  }
});

const curlHasHttp2 = (() => {
  try {
    const out = new Deno.Command("curl", { args: ["--version"], stdout: "piped", stderr: "null" }).outputSync();
    return out.success && /\bHTTP2\b/.test(td.decode(out.stdout));
  } catch {
    return false;
  }
})();

Deno.test({
  name: "curl --http2-prior-knowledge gets its POST body echoed by our server",
  ignore: !curlHasHttp2,
  async fn() {
    const ours = ourServer(echo);
    const file = await Deno.makeTempFile({ prefix: "tp_h2_curl_" });
    try {
      const body = pattern(300 * KiB, 5);
      await Deno.writeFile(file, body);
      // --data-binary rather than -d, which would strip CR and LF bytes from the file.
      const child = new Deno.Command("curl", {
        args: ["-sS", "--http2-prior-knowledge", "--data-binary", `@${file}`, `http://127.0.0.1:${ours.port}/x`],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const out = await child.output().finally(() => clearTimeout(killer));
      assert.equal(out.success, true, `curl failed: ${td.decode(out.stderr)}`);
      assertSameBytes(out.stdout, body, "curl's response body");
    } finally {
      await Deno.remove(file);
      await ours.stop();
    }
  },
});
