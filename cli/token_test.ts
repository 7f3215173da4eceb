import assert from "node:assert/strict";
import { readTokenFile, tokenWarnings } from "./token.ts";

const none = { onArgv: false, foreground: false };

Deno.test("tokenWarnings() says nothing without a token, or for a token in TP_TOKEN to a loopback or https manager", () => {
  assert.deepEqual(tokenWarnings({ token: "", managerUrl: "http://198.18.0.2:8081" }, { ...none, onArgv: true }), []);
  assert.deepEqual(tokenWarnings({ token: "t", managerUrl: "http://127.0.0.1:8081" }, none), []);
  assert.deepEqual(tokenWarnings({ token: "t", managerUrl: "http://[::1]:8081" }, none), []);
  assert.deepEqual(tokenWarnings({ token: "t", managerUrl: "http://localhost:8081" }, none), []);
  assert.deepEqual(tokenWarnings({ token: "t", managerUrl: "https://198.18.0.2:8081" }, none), []);
  assert.deepEqual(tokenWarnings({ token: "t", managerUrl: "" }, none), []);
});

Deno.test("tokenWarnings() warns of --token on a foreground daemon's command line, and of plain http to another host", () => {
  const [argv] = tokenWarnings({ token: "t", managerUrl: "" }, { onArgv: true, foreground: true });
  assert.match(argv!, /--token is on the command line .* TP_TOKEN or --token-file/);
  assert.deepEqual(tokenWarnings({ token: "t", managerUrl: "" }, { onArgv: true, foreground: false }), []);
  const [http] = tokenWarnings({ token: "t", managerUrl: "http://198.18.0.2:8081" }, none);
  assert.match(http!, /^sending the token to 198\.18\.0\.2 over plain http:\/\/, unencrypted/);
});

Deno.test("readTokenFile() returns the first line, and names a missing or empty file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/t`, "s3cret-token\nignored\n");
    assert.equal(await readTokenFile(`${dir}/t`), "s3cret-token");
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    await assert.rejects(() => readTokenFile(`${dir}/empty`), { name: "UsageError", message: /holds no token/ });
    await assert.rejects(() => readTokenFile(`${dir}/missing`), {
      name: "UsageError",
      message: /--token-file: cannot read/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
