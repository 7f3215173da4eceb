import assert from "node:assert/strict";
import { errorMessage } from "./error_message.ts";

Deno.test("errorMessage() gives an Error's message and anything else thrown as text", () => {
  assert.equal(errorMessage(new RangeError("MTU 20 is out of range")), "MTU 20 is out of range");
  assert.equal(errorMessage("a string"), "a string");
  assert.equal(errorMessage(undefined), "undefined");
});
