/**
 * Independent HTTP/2 peers against the real manager (issue 14): nghttp2's client (Debian's nghttp2-client) for normal
 * calls, many streams on one connection and a refused token; python3-h2 (Debian's) for a normal call, then seven
 * malformed requests sent with its own outbound checks off, then a normal call again, all on one connection. Each
 * malformed request must end in RST_STREAM PROTOCOL_ERROR for that stream alone (RFC 9113 section 8.1.1).
 */
import assert from "node:assert/strict";
import { startManager } from "./manager_fixture.ts";

const TOKEN = "t0ken";
const PYTHON = "/usr/bin/python3";
const VERSION_PATH = "/tp.manager.v1.Manager/Version";

async function run(cmd: string, args: string[], what: string): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${cmd} is missing: install ${what} (scripts/install_deps)`);
    throw e;
  }
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `${cmd} failed: ${new TextDecoder().decode(out.stderr)}${text}`);
  return text;
}

async function withManager(body: (port: number, tmp: string) => Promise<void>): Promise<void> {
  const m = await startManager({ token: TOKEN });
  const tmp = await Deno.makeTempDir();
  try {
    await body(m.port, tmp);
  } finally {
    await m.close();
    await Deno.remove(tmp, { recursive: true });
  }
}

/** nghttp's verbose log of one POST of an empty VersionRequest (one 5-byte gRPC-web frame). */
async function nghttpVersion(port: number, tmp: string, token: string | undefined): Promise<string> {
  const body = `${tmp}/version_request`;
  await Deno.writeFile(body, new Uint8Array(5));
  const auth = token === undefined ? [] : ["-H", `authorization: Bearer ${token}`];
  return await run("nghttp", [
    "-v",
    "-H",
    "content-type: application/grpc-web+proto",
    ...auth,
    "-d",
    body,
    `http://127.0.0.1:${port}${VERSION_PATH}`,
  ], "nghttp2-client");
}

Deno.test("nghttp calls Version over h2c and gets 200 with grpc-status 0 in the gRPC-web trailers", async () => {
  await withManager(async (port, tmp) => {
    const log = await nghttpVersion(port, tmp, TOKEN);
    assert.match(log, /recv \(stream_id=\d+\) :status: 200/);
    assert.match(log, /grpc-status: 0/);
    assert.doesNotMatch(log, /RST_STREAM|recv GOAWAY/);
  });
});

Deno.test("nghttp without the token is answered UNAUTHENTICATED (grpc-status 16), not reset", async () => {
  await withManager(async (port, tmp) => {
    const log = await nghttpVersion(port, tmp, undefined);
    assert.match(log, /:status: 200/);
    assert.match(log, /grpc-status: 16/);
  });
});

Deno.test("nghttp fetches /healthz 20 times as concurrent streams of one connection", async () => {
  await withManager(async (port) => {
    const log = await run("nghttp", ["-v", "-m", "20", `http://127.0.0.1:${port}/healthz`], "nghttp2-client");
    assert.equal(log.match(/recv \(stream_id=\d+\) :status: 200/g)?.length, 20);
    assert.doesNotMatch(log, /RST_STREAM|recv GOAWAY/);
  });
});

Deno.test("python3-h2: seven malformed requests are each reset with PROTOCOL_ERROR; calls before and after work", async () => {
  await withManager(async (port) => {
    const script = new URL("./h2_peer_client.py", import.meta.url).pathname;
    const out = await run(PYTHON, [script, String(port), TOKEN], "python3-h2");
    const r = JSON.parse(out.trim().split("\n").pop()!) as {
      exchanges: Record<string, { status: string | null; body: number; reset?: string }>;
      goaway: string | null;
    };
    assert.equal(r.goaway, null, "the connection stayed open");
    for (const call of ["Version", "Version again"]) {
      assert.equal(r.exchanges[call]?.status, "200", call);
      assert.ok((r.exchanges[call]?.body ?? 0) > 0, call);
    }
    const malformed = Object.entries(r.exchanges).filter(([name]) => !name.startsWith("Version"));
    assert.equal(malformed.length, 7);
    for (const [name, x] of malformed) assert.deepEqual([name, x.status, x.reset], [name, null, "PROTOCOL_ERROR"]);
  });
});
