/**
 * The manager's listener: one port for h2c (prior knowledge) and HTTP/1.1, TLS with ALPN h2 and an HTTP/1.1
 * fallback, and a graceful stop on SIGTERM with a tunnel open.
 */
import assert from "node:assert/strict";
import { connect, DialCode } from "../proto/mod.ts";
import { makePki } from "./k8s_certs.ts";
import { startManager, tcpEchoServer } from "./manager_fixture.ts";

Deno.test("TLS: a tunnel over HTTP/2 chosen by ALPN, and /healthz over HTTP/1.1 on the same port", async () => {
  const pki = makePki();
  const m = await startManager({ tls: { cert: pki.serverCert, key: pki.serverKey } });
  const echo = tcpEchoServer();
  const client = Deno.createHttpClient({ caCerts: [pki.caCert], http2: false });
  const url = `https://127.0.0.1:${m.port}`;
  try {
    const s = await connect(url, undefined, { ca: pki.caCert });
    try {
      const t = await s.openTunnel({
        protocol: "tcp",
        source: { ip: "10.0.0.1", port: 1 },
        destination: { ip: "127.0.0.1", port: echo.port },
      });
      assert.equal(t.dial.code, DialCode.ok);
      t.write(new TextEncoder().encode("over tls"));
      assert.equal(new TextDecoder().decode((await t.read())!), "over tls");
      t.closeWrite();
      assert.equal((await t.ended).how, "closed");
    } finally {
      await s.depart();
    }
    const r = await fetch(`${url}/healthz`, { client });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "ok\n");
  } finally {
    client.close();
    await echo.close();
    await m.close();
    pki.remove();
  }
});

Deno.test("plain port: /metrics and /healthz over HTTP/1.1 beside h2c", async () => {
  const m = await startManager();
  try {
    const s = await connect(m.url, undefined);
    await s.depart();
    const health = await fetch(`${m.url}/healthz`);
    assert.equal(await health.text(), "ok\n");
    const metrics = await (await fetch(`${m.url}/metrics`)).text();
    assert.match(metrics, /tp_manager_sessions_total 1/);
  } finally {
    await m.close();
  }
});

Deno.test("tp manager stops on SIGTERM with a tunnel open: the stream is reset and the process exits 0", async () => {
  const echo = tcpEchoServer();
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli/main.ts", import.meta.url).pathname,
      "manager",
      "--listen",
      `127.0.0.1:${port}`,
      "--pod-cidr",
      "127.0.0.0/8",
      "--dns-server",
      "127.0.0.1",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    const deadline = Date.now() + 30_000;
    while (!text.includes("manager listening") && Date.now() < deadline) {
      const r = await logs.read();
      if (r.done) break;
      text += r.value;
    }
    assert.match(text, /manager listening/);
    const s = await connect(`http://127.0.0.1:${port}`, undefined);
    const t = await s.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    assert.equal(t.dial.code, DialCode.ok);
    const t0 = Date.now();
    child.kill("SIGTERM");
    const end = await t.ended;
    assert.notEqual(end.how, "closed");
    const status = await child.status;
    assert.equal(status.code, 0);
    assert.ok(Date.now() - t0 < 5_000, `stopped after ${Date.now() - t0} ms`);
    for (let r = await logs.read(); !r.done; r = await logs.read()) text += r.value;
    assert.match(text, /manager stopped/);
    await s.close();
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
    await child.status;
    await logs.cancel().catch(() => {});
    await echo.close();
  }
});

Deno.test("TLS without the CA: refused by default, accepted when told not to verify (rejectUnauthorized: false)", async () => {
  const pki = makePki();
  const m = await startManager({ tls: { cert: pki.serverCert, key: pki.serverKey } });
  const url = `https://127.0.0.1:${m.port}`;
  try {
    await assert.rejects(connect(url, undefined), "an unknown CA is refused");
    const s = await connect(url, undefined, { rejectUnauthorized: false });
    assert.match(s.id, /\S/);
    await s.depart();
  } finally {
    await m.close();
    pki.remove();
  }
});

Deno.test("a TLS server that does not agree to HTTP/2 (ALPN) fails the connect with a message saying so", async () => {
  const pki = makePki();
  const l = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: pki.serverCert,
    key: pki.serverKey,
    alpnProtocols: ["http/1.1"],
  });
  const accepted = (async () => {
    const c = await l.accept();
    await c.handshake().catch(() => {});
    await c.read(new Uint8Array(1024)).catch(() => null);
    c.close();
  })();
  try {
    await assert.rejects(
      connect(`https://127.0.0.1:${(l.addr as Deno.NetAddr).port}`, undefined, { ca: pki.caCert }),
      /does not speak HTTP\/2 over TLS \(it refused ALPN h2\): is it a tp manager\?/,
    );
  } finally {
    l.close();
    await accepted.catch(() => {});
    pki.remove();
  }
});
