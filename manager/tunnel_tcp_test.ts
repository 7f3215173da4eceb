import assert from "node:assert/strict";
import { DialCode } from "../proto/messages.ts";
import { classifyDialError } from "./tunnel_tcp.ts";

/** An error as node:net reports a failed connect: the errno's name in `code`. */
const netError = (code: string, message = `connect ${code} 198.19.0.10:80`) =>
  Object.assign(new Error(message), { code });

Deno.test("classifyDialError() decides by the errno's name, never by the message's words", () => {
  assert.equal(classifyDialError(netError("ECONNREFUSED")).code, DialCode.refused);
  assert.equal(classifyDialError(netError("EHOSTUNREACH")).code, DialCode.unreachable);
  assert.equal(classifyDialError(netError("ENETUNREACH")).code, DialCode.unreachable);
  assert.equal(classifyDialError(netError("ETIMEDOUT")).code, DialCode.timeout);
  assert.equal(classifyDialError(netError("ECONNREFUSED")).message, "connect ECONNREFUSED 198.19.0.10:80");
  // Words without an errno: unreachable, whatever they say.
  assert.equal(classifyDialError(new Error("Connection refused")).code, DialCode.unreachable);
  assert.equal(classifyDialError("refused").code, DialCode.unreachable);
});
