import assert from "node:assert/strict";
import { versionSkew } from "./link.ts";

Deno.test("versionSkew() is silent for equal versions and names the older side otherwise", () => {
  assert.equal(versionSkew("0.1.0", "0.1.0"), null);
  assert.match(
    versionSkew("0.2.0", "0.1.3")!,
    /the traffic-manager \(0\.1\.3\) is older: run tp install --image .*:0\.2\.0/,
  );
  assert.match(versionSkew("0.1.0", "0.10.0")!, /this tp \(0\.1\.0\) is older: install the newer tp/);
});
