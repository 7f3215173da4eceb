import assert from "node:assert/strict";
import { IdleSweeper } from "./idle.ts";

Deno.test("IdleSweeper: an idle item expires after its limit, an active one does not, a cancelled one never", () => {
  let now = 1000;
  const s = new IdleSweeper(() => now);
  const expired: string[] = [];
  const idle = s.track(100, () => expired.push("idle"));
  const busy = s.track(100, () => expired.push("busy"));
  const gone = s.track(100, () => expired.push("gone"));
  gone.cancel();
  for (let i = 0; i < 10; i++) {
    now += 30;
    s.sweep();
    busy.touch();
  }
  assert.deepEqual(expired, ["idle"]);
  assert.equal(s.size, 1);
  idle.touch(); // after expiry: harmless
  busy.cancel();
  assert.equal(s.size, 0);
});
