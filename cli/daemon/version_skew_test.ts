import assert from "node:assert/strict";
import { versionSkewNote } from "./version_skew.ts";

Deno.test("versionSkewNote: silent for the same version, and for a daemon that names none", () => {
  assert.equal(versionSkewNote("0.1.0", "0.1.0"), null);
  assert.equal(versionSkewNote(undefined, "0.1.0"), null);
  assert.equal(versionSkewNote("", "0.1.0"), null);
  assert.equal(versionSkewNote(7, "0.1.0"), null);
});

Deno.test("versionSkewNote: names both versions and the fix; a long version is clipped", () => {
  assert.equal(
    versionSkewNote("0.0.9", "0.1.0"),
    "the running daemon is tp 0.0.9, this is tp 0.1.0: run tp quit, then tp connect, to use this version",
  );
  assert.match(versionSkewNote("9".repeat(500), "0.1.0")!, /^the running daemon is tp 9{40}, this is tp 0\.1\.0/);
});
