/** scripts/install_from_source: one command puts this checkout's tp on the PATH. */
import assert from "node:assert/strict";
import { exec, ROOT } from "./lab.ts";

const install = (dir: string, ...args: string[]) =>
  exec([`${ROOT}/scripts/install_from_source`, ...args], {
    timeoutMs: 60_000,
    env: { ...Deno.env.toObject(), TP_INSTALL_DIR: dir },
  });

Deno.test("install_from_source links tp into the directory, and that tp runs from anywhere", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "tp-from-source-" });
  try {
    const bin = `${tmp}/bin`;
    for (let i = 0; i < 2; i++) { // a second run is fine (after moving the checkout it repoints the link)
      const r = await install(bin);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^tp: ${bin}/tp -> ${ROOT}/scripts/tp \\(tp \\d+\\.\\d+\\.\\d+`));
      assert.match(r.stderr, new RegExp(`${bin} is not on your PATH`));
    }
    assert.equal(await Deno.readLink(`${bin}/tp`), `${ROOT}/scripts/tp`);
    const v = await exec(["sh", "-c", `cd / && PATH="${bin}:$PATH" tp version`]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^tp \d+\.\d+\.\d+ \(deno /);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("install_from_source does not replace a tp that is not a link without --force", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "tp-from-source-" });
  try {
    await Deno.writeTextFile(`${tmp}/tp`, "#!/bin/sh\necho a release binary\n");
    const refused = await install(tmp);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /exists and is not a link to a checkout .*--force/);
    assert.equal(await Deno.readTextFile(`${tmp}/tp`), "#!/bin/sh\necho a release binary\n");
    const forced = await install(tmp, "--force");
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await Deno.readLink(`${tmp}/tp`), `${ROOT}/scripts/tp`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
