import assert from "node:assert/strict";
import { tarGz } from "./tar.ts";
import { redactJson, redactText } from "./redact.ts";

Deno.test("tarGz() writes an archive GNU tar lists and extracts byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const big = new Uint8Array(1500).map((_, i) => i % 251);
    const files = [
      { name: "a.txt", data: new TextEncoder().encode("hello\n") },
      { name: "empty", data: new Uint8Array() },
      { name: "big.bin", data: big },
    ];
    await Deno.writeFile(`${dir}/x.tar.gz`, await tarGz(files, new Date("2026-01-02T03:04:05Z")));
    const list = await new Deno.Command("tar", { args: ["tzvf", `${dir}/x.tar.gz`], stdout: "piped" }).output();
    assert.ok(list.success);
    const lines = new TextDecoder().decode(list.stdout).trim().split("\n");
    assert.deepEqual(lines.map((l) => l.split(/\s+/).at(-1)), ["a.txt", "empty", "big.bin"]);
    assert.match(lines[0]!, /^-rw-r--r-- .* 6 2026-01-02/);
    const x = await new Deno.Command("tar", { args: ["xzf", `${dir}/x.tar.gz`, "-C", dir] }).output();
    assert.ok(x.success);
    assert.deepEqual(await Deno.readFile(`${dir}/big.bin`), big);
    assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "hello\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("redactJson() hides secret-named values at any depth; redactText() hides known secrets and bearers", () => {
  assert.deepEqual(redactJson({ settings: { token: "abc", namespace: "dev" }, list: [{ password: "p" }], t: "" }), {
    settings: { token: "(set)", namespace: "dev" },
    list: [{ password: "(set)" }],
    t: "",
  });
  assert.deepEqual(redactJson({ token: "" }), { token: "" }, "an empty token stays visibly empty");
  assert.equal(
    redactText("auth s3cr3t ok; Authorization: Bearer eyJhbGciOi.x.y end", ["s3cr3t"]),
    "auth (redacted) ok; Authorization: Bearer (redacted) end",
  );
});
