/**
 * Runs ffi/icmp_socket.ts inside a test's network namespace (tests/icmp_socket_test.ts): pings each address given as
 * an argument with the data "tp-ping-<address>" and prints one JSON line per address: the reply's data as text, null
 * for no reply, or the error's code and message.
 */
import { IcmpPinger } from "../ffi/icmp_socket.ts";
import { OsError } from "../ffi/errors.ts";

const pinger = new IcmpPinger();
try {
  const results = await Promise.all(Deno.args.map(async (dst) => {
    try {
      const reply = await pinger.echo(dst, new TextEncoder().encode(`tp-ping-${dst}`), 1000);
      return { dst, reply: reply === null ? null : new TextDecoder().decode(reply) };
    } catch (e) {
      return { dst, error: { code: e instanceof OsError ? e.code : "", message: (e as Error).message } };
    }
  }));
  for (const r of results) console.log(JSON.stringify(r));
} finally {
  await pinger.close();
}
