import assert from "node:assert/strict";
import { encodeName, scanMessage } from "./message.ts";
import { renameMessage } from "./rewrite.ts";
import { CAPTURED_SRV, dataOf, decode, query } from "./_test_util.ts";

Deno.test("renameMessage() renames the owner of a captured SRV answer and expands compressed names", () => {
  const info = scanMessage(CAPTURED_SRV)!;
  const short = encodeName("_http._tcp.Echo.default");
  const question = Uint8Array.from([...short, 0, 33, 0, 1]);
  const out = renameMessage(CAPTURED_SRV, info, {
    question,
    from: "_http._tcp.echo.default.svc.cluster.local",
    to: short,
  })!;
  const p = decode(out);
  assert.equal(p.id, 0x1234);
  assert.equal(p.questions![0]!.name, "_http._tcp.Echo.default");
  assert.equal(p.answers![0]!.name, "_http._tcp.Echo.default");
  assert.deepEqual(dataOf(p.answers![0]!), {
    priority: 0,
    weight: 100,
    port: 8080,
    target: "echo.default.svc.cluster.local",
  });
  // The additional records pointed into the SRV RDATA; expanded, they still name the target.
  assert.deepEqual(p.additionals!.map((a) => [a.name, dataOf(a)]), [
    ["echo.default.svc.cluster.local", "198.19.0.10"],
    ["echo.default.svc.cluster.local", "2001:db8:5::10"],
  ]);
  assert.ok(scanMessage(out));
});

Deno.test("renameMessage() rewrites a query's question and keeps its OPT record", () => {
  const q = query("echo.default", "A", { udpSize: 1400 });
  const to = encodeName("echo.default.svc.cluster.local");
  const out = renameMessage(q, scanMessage(q)!, { question: Uint8Array.from([...to, 0, 1, 0, 1]), from: "x", to })!;
  const info = scanMessage(out)!;
  assert.equal(info.question!.name, "echo.default.svc.cluster.local");
  assert.equal(info.opt?.udpSize, 1400);
});

Deno.test("renameMessage() refuses RDATA that does not match its type's layout", () => {
  // A CNAME whose RDATA is 3 bytes that are not a name.
  const bytes = Uint8Array.from([
    ...[0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0],
    ...[1, 0x61, 0, 0, 5, 0, 1],
    ...[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 3, 5, 0x62, 0],
  ]);
  const info = scanMessage(bytes)!;
  assert.ok(info);
  assert.equal(renameMessage(bytes, info, { question: bytes.subarray(12, 19), from: "a", to: encodeName("b") }), null);
});
